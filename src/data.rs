//! What the application knows about a connection beyond its user and groups (a team, a role), as
//! the identity resolver attached it: kept as JSON, so that it reads the same in this process, in
//! an external backend's forward and on every node of a cluster.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most JSON a connection's data may take: a few ids and roles, not a document. Every
/// connection keeps its own copy for as long as it is open.
pub(crate) const MAX_DATA_LEN: usize = 4096;

/// A connection's data: none, or its JSON text, or why the application's value could not be
/// serialised (a bug of the resolver's, refused at the upgrade like an id over the limit). One
/// thin pointer: every connection's task and registry entry carries one, most of them empty.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Data(Option<Arc<Kept>>);

#[derive(PartialEq, Eq)]
enum Kept {
    Json(Box<str>),
    Unserializable(Box<str>),
}

impl Data {
    pub(crate) fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        let kept = match serde_json::to_string(value) {
            Ok(json) => Kept::Json(json.into()),
            Err(e) => Kept::Unserializable(e.to_string().into()),
        };
        Self(Some(Arc::new(kept)))
    }

    /// Data that arrives as text (from another node's record), kept only when it is JSON.
    #[cfg(any(feature = "cluster", test))]
    pub(crate) fn from_json(text: &str) -> Self {
        if text.is_empty() || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
            return Self::default();
        }
        Self(Some(Arc::new(Kept::Json(text.into()))))
    }

    pub(crate) fn json(&self) -> Option<&str> {
        match self.0.as_deref() {
            Some(Kept::Json(json)) => Some(json),
            Some(Kept::Unserializable(_)) | None => None,
        }
    }

    /// Deserialises the data; no data reads as `null`, so `Option<T>` reads it as `None`.
    pub(crate) fn read<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.json().unwrap_or("null"))
    }

    /// Why the data cannot be kept, in words for the log.
    pub(crate) fn problem(&self) -> Option<String> {
        match self.0.as_deref()? {
            Kept::Json(json) if json.len() > MAX_DATA_LEN => Some(format!(
                "the connection's data is {} bytes of JSON; the limit is {MAX_DATA_LEN}",
                json.len()
            )),
            Kept::Unserializable(why) => Some(format!(
                "the connection's data cannot be serialised to JSON: {why}"
            )),
            Kept::Json(_) => None,
        }
    }

    /// The JSON with every character beyond ASCII escaped (`\u00e9`), which is the same JSON and
    /// a valid header value (control characters are escaped in JSON text already).
    pub(crate) fn ascii_json(&self) -> Option<String> {
        let json = self.json()?;
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        Some(out)
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_deref() {
            None => f.write_str("None"),
            Some(Kept::Json(json)) => write!(f, "{json}"),
            Some(Kept::Unserializable(why)) => write!(f, "Unserializable({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    struct Staff {
        team: String,
        admin: bool,
    }

    #[test]
    fn data_reads_back_as_its_type_and_absence_as_null() {
        let staff = Staff {
            team: "Zürich".into(),
            admin: true,
        };
        let data = Data::of(&staff);
        assert_eq!(data.read::<Staff>().unwrap(), staff);
        assert_eq!(Data::default().read::<Option<Staff>>().unwrap(), None);
        assert!(Data::default().read::<Staff>().is_err());
        assert!(data.read::<u32>().is_err());
    }

    #[test]
    fn header_json_is_ascii_and_the_same_json() {
        let data = Data::of(&serde_json::json!({"team": "Zürich 🦀", "n": 1}));
        let ascii = data.ascii_json().unwrap();
        assert!(ascii.is_ascii(), "{ascii}");
        assert!(http::HeaderValue::from_str(&ascii).is_ok());
        let back: serde_json::Value = serde_json::from_str(&ascii).unwrap();
        assert_eq!(back, serde_json::json!({"team": "Zürich 🦀", "n": 1}));
    }

    #[test]
    fn problems_are_named() {
        assert_eq!(Data::of(&"x").problem(), None);
        let big = Data::of(&"x".repeat(MAX_DATA_LEN));
        assert!(big.problem().unwrap().contains("limit is 4096"));
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        assert!(Data::of(&map)
            .problem()
            .unwrap()
            .contains("cannot be serialised"));
        assert_eq!(Data::from_json("{\"a\":"), Data::default());
        assert_eq!(Data::from_json("{\"a\":1}").json(), Some("{\"a\":1}"));
    }
}
