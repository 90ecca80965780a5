//! What the application is told about a connection: in a forwarded request and in the
//! connect and disconnect callbacks.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::data::Data;
use crate::id::ConnectionId;

/// A connection as the hub knows it: trusted, since only the hub sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The hub's id for the connection.
    pub connection_id: ConnectionId,
    /// Its user (`""` when anonymous).
    pub user_id: String,
    /// Its groups when the message was handled (the first is its `groupId`). In an answer of
    /// [`Hub::connection`](crate::Hub::connection) they are sorted.
    pub groups: Vec<String>,
    pub(crate) data: Data,
}

impl ConnectionInfo {
    /// A connection's description, for testing a handler without a hub. (Forging one gains a
    /// client nothing: the `Forwarded` extractor reads it from a request extension, which only code
    /// in the application's process can set.)
    pub fn new(connection_id: ConnectionId, user_id: String, groups: Vec<String>) -> Self {
        Self {
            connection_id,
            user_id,
            groups,
            data: Data::default(),
        }
    }

    /// With the application's data, as an identity resolver attaches it
    /// ([`Identity::with_data`](crate::Identity::with_data)); for tests.
    #[must_use]
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        self.data = Data::of(data);
        self
    }

    /// The data the identity resolver attached ([`Identity::with_data`](crate::Identity::with_data)),
    /// as `T`. A connection without data reads as JSON `null`: ask for an `Option<T>` when some
    /// connections have none.
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct Staff { team: String }
    ///
    /// let id = "0123456789abcdef0123456789abcdef".parse().unwrap();
    /// let ann = wshub::ConnectionInfo::new(id, "ann".into(), vec![])
    ///     .with_data(&Staff { team: "support".into() });
    /// assert_eq!(ann.data::<Staff>().unwrap().team, "support");
    /// let bob = wshub::ConnectionInfo::new(id, "bob".into(), vec![]);
    /// assert_eq!(bob.data::<Option<Staff>>().unwrap(), None);
    /// ```
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.data.read()
    }

    /// The data as JSON text, when there is any.
    pub fn data_json(&self) -> Option<&str> {
        self.data.json()
    }

    pub(crate) fn with_data_of(mut self, data: Data) -> Self {
        self.data = data;
        self
    }

    /// The connection's `groupId`: its first group, or `""`.
    pub fn group_id(&self) -> &str {
        self.groups.first().map_or("", String::as_str)
    }
}
