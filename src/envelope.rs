//! The one message shape of the protocol (docs/protocol.md §1, §2): parsing with the exact errors the
//! protocol names, and serialising to one shared frame that every recipient gets a clone of.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

use crate::budget::{Budget, FrameCharge};
use crate::websocket::{Frame, HEAD_ROOM};

use crate::error::EnvelopeError;

/// One protocol message: `{action, message, groupId, userId, recipients}`.
///
/// `message` is kept as the raw JSON the sender wrote, so it is passed through untouched (a string
/// stays a string, an object keeps its key order and its numbers their digits).
///
/// ```
/// use wshub::{Envelope, Recipient};
///
/// let envelope = Envelope::new("chat")
///     .with_message(&"hello")
///     .to(Recipient::group("room-1"))
///     .to(Recipient::all_but_user("rick"));
/// assert_eq!(
///     envelope.to_json(),
///     r#"{"action":"chat","message":"hello","groupId":"","userId":"","recipients":[{"type":"group","value":"room-1"},{"type":"allButUser","value":"rick"}]}"#
/// );
/// let back = Envelope::from_json(envelope.to_json().as_bytes()).unwrap();
/// assert_eq!(back, envelope);
/// ```
#[derive(Clone)]
pub struct Envelope {
    /// Routing word for the application; names starting with `__` are reserved for the hub.
    pub action: String,
    /// The payload, as raw JSON.
    pub message: Box<RawValue>,
    /// The sender's group (`""` for none).
    pub group_id: String,
    /// The sender's user (`""` for none).
    pub user_id: String,
    /// Who receives it; see [`Recipient`].
    pub recipients: Vec<Recipient>,
    /// The client's `requestId` (docs/protocol.md §4.1): the hub answers the message with a
    /// `__reply` or an `__error` that carries it. Recipients never see it.
    pub request_id: Option<String>,
}

/// One entry of an envelope's `recipients`: `{"type": kind, "value": value}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recipient {
    /// What `value` names, and whether it adds or removes connections.
    pub kind: RecipientKind,
    /// A group, user or connection id; ignored for [`RecipientKind::All`].
    pub value: String,
}

/// The recipient types of docs/protocol.md §2. Matched case-insensitively on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientKind {
    /// `all`: every connection.
    All,
    /// `group`: connections in group `value`.
    Group,
    /// `user`: connections whose user id is `value`.
    User,
    /// `connection`: the connection whose id is `value`.
    Connection,
    /// `allButUser` (alias `allExceptUser`): removes connections whose user id is `value`.
    AllButUser,
    /// `allButGroup`: removes connections in group `value`.
    AllButGroup,
    /// `allButConnection`: removes the connection whose id is `value`.
    AllButConnection,
}

impl RecipientKind {
    /// The canonical wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Group => "group",
            Self::User => "user",
            Self::Connection => "connection",
            Self::AllButUser => "allButUser",
            Self::AllButGroup => "allButGroup",
            Self::AllButConnection => "allButConnection",
        }
    }

    /// Parses a wire name, case-insensitively, including the `allExceptUser` alias.
    pub fn parse(name: &str) -> Option<Self> {
        const NAMES: [(&str, RecipientKind); 8] = [
            ("all", RecipientKind::All),
            ("group", RecipientKind::Group),
            ("user", RecipientKind::User),
            ("connection", RecipientKind::Connection),
            ("allbutuser", RecipientKind::AllButUser),
            ("allexceptuser", RecipientKind::AllButUser),
            ("allbutgroup", RecipientKind::AllButGroup),
            ("allbutconnection", RecipientKind::AllButConnection),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, kind)| kind)
    }

    /// Whether this kind removes connections from the target set rather than adding them.
    pub fn is_exclude(self) -> bool {
        matches!(
            self,
            Self::AllButUser | Self::AllButGroup | Self::AllButConnection
        )
    }
}

impl fmt::Display for RecipientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Recipient {
    /// A recipient of the given kind and value.
    pub fn new(kind: RecipientKind, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }
    /// `{"type":"all"}`.
    pub fn all() -> Self {
        Self::new(RecipientKind::All, "")
    }
    /// `{"type":"group","value":group}`.
    pub fn group(group: impl Into<String>) -> Self {
        Self::new(RecipientKind::Group, group)
    }
    /// `{"type":"user","value":user}`.
    pub fn user(user: impl Into<String>) -> Self {
        Self::new(RecipientKind::User, user)
    }
    /// `{"type":"connection","value":id}`.
    pub fn connection(id: impl fmt::Display) -> Self {
        Self::new(RecipientKind::Connection, id.to_string())
    }
    /// `{"type":"allButUser","value":user}`.
    pub fn all_but_user(user: impl Into<String>) -> Self {
        Self::new(RecipientKind::AllButUser, user)
    }
    /// `{"type":"allButGroup","value":group}`.
    pub fn all_but_group(group: impl Into<String>) -> Self {
        Self::new(RecipientKind::AllButGroup, group)
    }
    /// `{"type":"allButConnection","value":id}`.
    pub fn all_but_connection(id: impl fmt::Display) -> Self {
        Self::new(RecipientKind::AllButConnection, id.to_string())
    }
}

/// Bounds on what an envelope from the network may hold, beyond the message size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldLimits {
    pub(crate) max_recipients: usize,
    pub(crate) max_id_len: usize,
}

impl Default for FieldLimits {
    fn default() -> Self {
        Self {
            max_recipients: 1024,
            max_id_len: 256,
        }
    }
}

impl Envelope {
    /// An envelope with the given action, an empty string message and no recipients.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            message: empty_message(),
            group_id: String::new(),
            user_id: String::new(),
            recipients: Vec::new(),
            request_id: None,
        }
    }

    /// Replaces the message with `value` serialised to JSON.
    ///
    /// Serialising a value that cannot be JSON (a map with non-string keys) gives `null`.
    #[must_use]
    pub fn with_message<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.message = serde_json::value::to_raw_value(value).unwrap_or_else(|_| null_message());
        self
    }

    /// Adds a recipient.
    #[must_use]
    pub fn to(mut self, recipient: Recipient) -> Self {
        self.recipients.push(recipient);
        self
    }

    /// Sets the sender's user id.
    #[must_use]
    pub fn from_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = user_id.into();
        self
    }

    /// Sets the sender's group id.
    #[must_use]
    pub fn from_group(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = group_id.into();
        self
    }

    /// Deserialises `message` into `T`.
    pub fn message_as<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.message.get())
    }

    /// Parses one envelope with the default field limits.
    pub fn from_json(json: &[u8]) -> Result<Self, EnvelopeError> {
        Self::parse(json, FieldLimits::default())
    }

    pub(crate) fn parse(json: &[u8], limits: FieldLimits) -> Result<Self, EnvelopeError> {
        let envelope: Self = serde_json::from_slice(json).map_err(EnvelopeError::from_json)?;
        envelope.check(limits)?;
        Ok(envelope)
    }

    /// Parses a JSON envelope or a JSON array of envelopes; all of them or none. An error in an
    /// array says which envelope it is in (`[2]: …`).
    pub(crate) fn parse_batch(
        json: &[u8],
        limits: FieldLimits,
    ) -> Result<Vec<Self>, EnvelopeError> {
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
            return Self::parse(json, limits).map(|envelope| vec![envelope]);
        }
        let items: Vec<&RawValue> =
            serde_json::from_slice(json).map_err(EnvelopeError::from_json)?;
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                Self::parse(item.get().as_bytes(), limits)
                    .map_err(|e| e.at(format_args!("[{index}]")))
            })
            .collect()
    }

    fn check(&self, limits: FieldLimits) -> Result<(), EnvelopeError> {
        let too_long = |field: &str, value: &str| {
            (value.len() > limits.max_id_len).then(|| {
                EnvelopeError::new(format!(
                    "{field} is {} bytes long; the limit is {}",
                    value.len(),
                    limits.max_id_len
                ))
            })
        };
        if let Some(e) = too_long("action", &self.action)
            .or_else(|| too_long("groupId", &self.group_id))
            .or_else(|| too_long("userId", &self.user_id))
            .or_else(|| too_long("requestId", self.request_id.as_deref().unwrap_or("")))
        {
            return Err(e);
        }
        if self.recipients.len() > limits.max_recipients {
            return Err(EnvelopeError::new(format!(
                "recipients has {} entries; the limit is {}",
                self.recipients.len(),
                limits.max_recipients
            )));
        }
        for (i, r) in self.recipients.iter().enumerate() {
            if let Some(e) = too_long(&format!("recipients[{i}].value"), &r.value) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Serialises the envelope to its JSON text, recipients included (what a forward carries).
    pub fn to_json(&self) -> String {
        // Serialising strings, a raw value and a list of string pairs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The frame every recipient receives a clone of: the envelope as delivered, serialised once,
    /// header included, shared by reference count, and held against `budget` until the last
    /// recipient has written it.
    pub(crate) fn to_frame(&self, budget: &Arc<Budget>) -> Frame {
        self.frame_of(&Delivered(self, None), budget)
    }

    /// The frame of the hub's answer to one client's request (`__reply`, `__error`): as
    /// delivered, with the request's id.
    pub(crate) fn to_answer_frame(&self, request_id: &str, budget: &Arc<Budget>) -> Frame {
        self.frame_of(&Delivered(self, Some(request_id)), budget)
    }

    fn frame_of(&self, delivered: &Delivered<'_>, budget: &Arc<Budget>) -> Frame {
        // Room for the usual envelope without growing: the fields, their names and quotes.
        let estimate = HEAD_ROOM
            + 64
            + self.action.len()
            + self.message.get().len()
            + self.group_id.len()
            + self.user_id.len()
            + delivered.1.map_or(0, |id| id.len() + 16);
        let mut buffer = Vec::with_capacity(estimate);
        buffer.resize(HEAD_ROOM, 0);
        // Writing strings and a raw value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut buffer, delivered);
        let charge = FrameCharge::new(budget, buffer.capacity());
        Frame::text(buffer, charge)
    }

    /// The `requestId` of a client's text, read leniently: from an envelope too broken to parse,
    /// so that its `__error` still reaches the request that caused it. `None` when the text is
    /// not a JSON object or its `requestId` is not a string within `max_len` bytes.
    pub(crate) fn request_id_of(text: &[u8], max_len: usize) -> Option<String> {
        #[derive(Deserialize)]
        struct Only {
            #[serde(rename = "requestId")]
            request_id: Option<String>,
        }
        let Only { request_id } = serde_json::from_slice(text).ok()?;
        request_id.filter(|id| !id.is_empty() && id.len() <= max_len)
    }

    /// A hub envelope (`__connected`, `__error`) with no sender and no recipients.
    pub(crate) fn system<T: Serialize + ?Sized>(action: &str, message: &T) -> Self {
        Self::new(action).with_message(message)
    }
}

fn empty_message() -> Box<RawValue> {
    RawValue::from_string("\"\"".to_owned()).unwrap_or_else(|_| null_message())
}

fn null_message() -> Box<RawValue> {
    // `null` is valid JSON; `from_string` only fails on invalid JSON.
    RawValue::from_string("null".to_owned()).expect("null is valid JSON")
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.action == other.action
            && self.message.get() == other.message.get()
            && self.group_id == other.group_id
            && self.user_id == other.user_id
            && self.recipients == other.recipients
            && self.request_id == other.request_id
    }
}

impl Eq for Envelope {}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("action", &self.action)
            .field("message", &self.message.get())
            .field("group_id", &self.group_id)
            .field("user_id", &self.user_id)
            .field("recipients", &self.recipients)
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_envelope(
            self,
            &self.recipients,
            self.request_id.as_deref(),
            serializer,
        )
    }
}

/// An envelope as a receiver sees it: with `recipients: []` (docs/protocol.md §1). The list is the
/// sender's business: it names the other receivers' connection ids (which are capabilities) and
/// user ids, and whom the sender left out. The field stays, empty, for clients that expect the
/// five fields. A `requestId` is there only in the hub's answer to the request's sender.
struct Delivered<'a>(&'a Envelope, Option<&'a str>);

impl Serialize for Delivered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_envelope(self.0, &[], self.1, serializer)
    }
}

fn serialize_envelope<S: Serializer>(
    envelope: &Envelope,
    recipients: &[Recipient],
    request_id: Option<&str>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut s = serializer.serialize_struct("Envelope", 5 + usize::from(request_id.is_some()))?;
    s.serialize_field("action", &envelope.action)?;
    s.serialize_field("message", &envelope.message)?;
    s.serialize_field("groupId", &envelope.group_id)?;
    s.serialize_field("userId", &envelope.user_id)?;
    s.serialize_field("recipients", recipients)?;
    if let Some(id) = request_id {
        s.serialize_field("requestId", id)?;
    }
    s.end()
}

impl Serialize for Recipient {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Recipient", 2)?;
        s.serialize_field("type", self.kind.as_str())?;
        s.serialize_field("value", &self.value)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope object {action, message, groupId, userId, recipients}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut envelope = Envelope::new("");
        let mut seen = [false; 6];
        while let Some(key) = map.next_key::<Field>()? {
            let slot = key as usize;
            if key != Field::Other {
                if seen[slot] {
                    return Err(de::Error::custom(format_args!(
                        "duplicate field `{}`",
                        key.name()
                    )));
                }
                seen[slot] = true;
            }
            match key {
                Field::Action => {
                    envelope.action = map
                        .next_value::<String>()
                        .map_err(|e| field_error("action", "a string", e))?
                }
                Field::Message => envelope.message = map.next_value()?,
                Field::GroupId => {
                    envelope.group_id = map
                        .next_value::<Option<String>>()
                        .map_err(|e| field_error("groupId", "a string or null", e))?
                        .unwrap_or_default()
                }
                Field::UserId => {
                    envelope.user_id = map
                        .next_value::<Option<String>>()
                        .map_err(|e| field_error("userId", "a string or null", e))?
                        .unwrap_or_default()
                }
                Field::Recipients => envelope.recipients = map.next_value::<Recipients>()?.0,
                Field::RequestId => {
                    envelope.request_id = map
                        .next_value::<Option<String>>()
                        .map_err(|e| field_error("requestId", "a string or null", e))?
                        .filter(|id| !id.is_empty())
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

fn field_error<E: de::Error>(field: &str, expected: &str, _cause: impl fmt::Display) -> E {
    E::custom(format_args!("`{field}` must be {expected}"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Action = 0,
    Message = 1,
    GroupId = 2,
    UserId = 3,
    Recipients = 4,
    RequestId = 5,
    // Unknown fields are ignored and may repeat; its slot in `seen` is never read.
    Other = 6,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Self::Action => "action",
            Self::Message => "message",
            Self::GroupId => "groupId",
            Self::UserId => "userId",
            Self::Recipients => "recipients",
            Self::RequestId => "requestId",
            Self::Other => "",
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "action" => Field::Action,
                    "message" => Field::Message,
                    "groupId" => Field::GroupId,
                    "userId" => Field::UserId,
                    "recipients" => Field::Recipients,
                    "requestId" => Field::RequestId,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

/// The `recipients` array, with the index of a bad entry in its error.
struct Recipients(Vec<Recipient>);

impl<'de> Deserialize<'de> for Recipients {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqVisitor;
        impl<'de> Visitor<'de> for SeqVisitor {
            type Value = Recipients;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`recipients` as an array of {type, value}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Recipients, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(r) = seq.next_element_seed(IndexedRecipient(out.len()))? {
                    out.push(r);
                }
                Ok(Recipients(out))
            }
        }
        deserializer.deserialize_seq(SeqVisitor)
    }
}

struct IndexedRecipient(usize);

impl<'de> de::DeserializeSeed<'de> for IndexedRecipient {
    type Value = Recipient;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Recipient, D::Error> {
        deserializer.deserialize_map(RecipientVisitor(self.0))
    }
}

struct RecipientVisitor(usize);

/// A recipient value: a string, or a number read as its decimal text.
struct IdValue(String);

impl<'de> Deserialize<'de> for IdValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => Ok(Self(s)),
            serde_json::Value::Number(n) => Ok(Self(n.to_string())),
            _ => Err(de::Error::custom("not a string or number")),
        }
    }
}

impl<'de> Visitor<'de> for RecipientVisitor {
    type Value = Recipient;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "recipients[{}] as an object {{type, value}}", self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Recipient, A::Error> {
        let at = self.0;
        let mut kind = None;
        let mut value = None;
        // A repeated key is refused, not read as its last occurrence: a proxy that checked the
        // first `type` would have passed what the hub then sends somewhere else.
        let duplicate = |field: &str| {
            de::Error::custom(format_args!(
                "recipients[{at}] has a duplicate field `{field}`"
            ))
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" if kind.is_some() => return Err(duplicate("type")),
                "value" if value.is_some() => return Err(duplicate("value")),
                "type" => {
                    let name = map.next_value::<String>().map_err(|_| {
                        de::Error::custom(format_args!("recipients[{at}].type must be a string"))
                    })?;
                    kind = Some(RecipientKind::parse(&name).ok_or_else(|| {
                        de::Error::custom(format_args!(
                            "recipients[{at}].type {name:?} is not a recipient type"
                        ))
                    })?);
                }
                "value" => {
                    value = Some(map.next_value::<IdValue>().map_err(|_| {
                        de::Error::custom(format_args!(
                            "recipients[{at}].value must be a string or a number"
                        ))
                    })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = kind
            .ok_or_else(|| de::Error::custom(format_args!("recipients[{at}].type is missing")))?;
        let value = match (value, kind) {
            (Some(IdValue(v)), _) => v,
            (None, RecipientKind::All) => String::new(),
            (None, _) => {
                return Err(de::Error::custom(format_args!(
                    "recipients[{at}].value is missing"
                )))
            }
        };
        Ok(Recipient { kind, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the network sends, parsing answers; it never panics.
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Envelope::from_json(&bytes);
            let _ = Envelope::parse_batch(&bytes, FieldLimits::default());
        }

        /// Near-misses of the grammar, which random bytes rarely reach.
        #[test]
        fn parsing_envelope_shaped_text_never_panics(
            text in r#"[\[{]?\{("(action|message|groupId|userId|recipients|type|value)":(\[|\{|"[a-zA-Z_]{0,4}"|-?[0-9]{1,3}|null|true|,|\}|\])+){0,6}\}?"#
        ) {
            let _ = Envelope::from_json(text.as_bytes());
            let _ = Envelope::parse_batch(text.as_bytes(), FieldLimits::default());
        }

        /// What the hub serialises parses back to the same envelope.
        #[test]
        fn serialising_then_parsing_round_trips(
            action in "[a-z_]{0,8}",
            message in "\\PC{0,16}",
            user in "\\PC{0,8}",
            group in "\\PC{0,8}",
            recipients in prop::collection::vec(
                (0..7usize, "\\PC{0,8}").prop_map(|(k, v)| {
                    let kinds = [RecipientKind::All, RecipientKind::Group, RecipientKind::User,
                        RecipientKind::Connection, RecipientKind::AllButUser,
                        RecipientKind::AllButGroup, RecipientKind::AllButConnection];
                    Recipient::new(kinds[k], v)
                }),
                0..4,
            ),
            request_id in prop::option::of("\\PC{1,8}"),
        ) {
            let mut envelope = Envelope::new(action).with_message(&message).from_user(user).from_group(group);
            envelope.recipients = recipients;
            envelope.request_id = request_id;
            prop_assert_eq!(Envelope::from_json(envelope.to_json().as_bytes()), Ok(envelope));
        }
    }

    fn parse(json: &str) -> Result<Envelope, String> {
        Envelope::from_json(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn missing_fields_take_their_defaults() {
        let e = parse("{}").unwrap();
        assert_eq!(e.action, "");
        assert_eq!(e.message.get(), r#""""#);
        assert_eq!(e.group_id, "");
        assert_eq!(e.user_id, "");
        assert!(e.recipients.is_empty());
    }

    #[test]
    fn message_passes_through_byte_for_byte() {
        let e = parse(r#"{"message":{"b":1,"a":1.50,"n":12345678901234567890123}}"#).unwrap();
        assert_eq!(
            e.message.get(),
            r#"{"b":1,"a":1.50,"n":12345678901234567890123}"#
        );
        let e = parse(r#"{"message":null}"#).unwrap();
        assert_eq!(e.message.get(), "null");
    }

    #[test]
    fn null_ids_mean_empty_and_unknown_fields_are_dropped() {
        let e = parse(r#"{"groupId":null,"userId":null,"extra":[1,2]}"#).unwrap();
        assert_eq!((e.group_id.as_str(), e.user_id.as_str()), ("", ""));
        assert!(!e.to_json().contains("extra"));
    }

    #[test]
    fn recipient_types_are_case_insensitive_with_alias_and_numeric_values() {
        let e = parse(
            r#"{"recipients":[{"type":"GROUP","value":"g"},{"type":"allExceptUser","value":7},{"type":"All"}]}"#,
        )
        .unwrap();
        assert_eq!(
            e.recipients,
            vec![
                Recipient::group("g"),
                Recipient::all_but_user("7"),
                Recipient::all()
            ]
        );
    }

    #[test]
    fn invalid_envelopes_say_what_is_wrong() {
        for (json, expected) in [
            ("[]", "an envelope object"),
            ("\"x\"", "an envelope object"),
            ("{", "EOF"),
            (r#"{"action":1}"#, "`action` must be a string"),
            (r#"{"userId":false}"#, "`userId` must be a string or null"),
            (r#"{"recipients":{}}"#, "recipients"),
            (
                r#"{"recipients":[{"type":"nobody","value":"x"}]}"#,
                "recipients[0].type \"nobody\"",
            ),
            (
                r#"{"recipients":[{"type":"all"},{"value":"x"}]}"#,
                "recipients[1].type is missing",
            ),
            (
                r#"{"recipients":[{"type":"user"}]}"#,
                "recipients[0].value is missing",
            ),
            (
                r#"{"recipients":[{"type":"user","value":[1]}]}"#,
                "string or a number",
            ),
            (r#"{"action":"a","action":"b"}"#, "duplicate field `action`"),
            (
                r#"{"recipients":[{"type":"user","value":"nobody","type":"all"}]}"#,
                "recipients[0] has a duplicate field `type`",
            ),
            (
                r#"{"recipients":[{"type":"all"},{"value":"a","type":"user","value":"b"}]}"#,
                "recipients[1] has a duplicate field `value`",
            ),
            (
                r#"{"recipients":[{"typ\u0065":"user","value":"a","type":"all"}]}"#,
                "recipients[0] has a duplicate field `type`",
            ),
        ] {
            let err = parse(json).expect_err(json);
            assert!(err.contains(expected), "{json}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn field_limits_are_enforced() {
        let limits = FieldLimits {
            max_recipients: 2,
            max_id_len: 4,
        };
        let parse = |j: &str| Envelope::parse(j.as_bytes(), limits).map_err(|e| e.to_string());
        assert!(parse(r#"{"action":"abcd"}"#).is_ok());
        assert!(parse(r#"{"action":"abcde"}"#)
            .unwrap_err()
            .contains("action"));
        assert!(
            parse(r#"{"recipients":[{"type":"all"},{"type":"all"},{"type":"all"}]}"#)
                .unwrap_err()
                .contains("limit is 2")
        );
        assert!(parse(r#"{"recipients":[{"type":"user","value":"abcde"}]}"#)
            .unwrap_err()
            .contains("recipients[0].value"));
    }

    #[test]
    fn a_delivered_frame_has_no_recipients_but_the_json_keeps_them() {
        let envelope = Envelope::new("chat")
            .with_message(&"hi")
            .from_user("ann")
            .to(Recipient::connection("0123456789abcdef0123456789abcdef"))
            .to(Recipient::all_but_user("bob"));
        let frame = envelope.to_frame(&Budget::unlimited());
        // After the two bytes of a short frame's header.
        assert_eq!(
            &frame.bytes()[2..],
            br#"{"action":"chat","message":"hi","groupId":"","userId":"ann","recipients":[]}"#
        );
        assert!(envelope
            .to_json()
            .contains(r#"{"type":"allButUser","value":"bob"}"#));
    }

    #[test]
    fn request_ids_reach_the_forward_and_the_answer_but_no_recipient() {
        let e = parse(r#"{"action":"a","requestId":"7"}"#).unwrap();
        assert_eq!(e.request_id.as_deref(), Some("7"));
        assert!(
            e.to_json().ends_with(r#","requestId":"7"}"#),
            "{}",
            e.to_json()
        );
        let delivered = e.to_frame(&Budget::unlimited());
        assert!(!String::from_utf8_lossy(&delivered.bytes()[2..]).contains("requestId"));
        let reply = Envelope::system("__reply", &()).to_answer_frame("7", &Budget::unlimited());
        assert_eq!(
            &reply.bytes()[2..],
            br#"{"action":"__reply","message":null,"groupId":"","userId":"","recipients":[],"requestId":"7"}"#
        );
        for none in [r#"{"requestId":""}"#, r#"{"requestId":null}"#, "{}"] {
            assert_eq!(parse(none).unwrap().request_id, None, "{none}");
        }
        let err = parse(r#"{"requestId":7}"#).unwrap_err();
        assert!(
            err.contains("`requestId` must be a string or null"),
            "{err}"
        );
        let err = Envelope::parse(
            br#"{"requestId":"12345"}"#,
            FieldLimits {
                max_recipients: 1,
                max_id_len: 4,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("requestId is 5 bytes"), "{err}");
    }

    #[test]
    fn a_broken_envelope_still_tells_its_request_id() {
        let id = |text: &str| Envelope::request_id_of(text.as_bytes(), 4);
        assert_eq!(
            id(r#"{"requestId":"r1","recipients":7}"#).as_deref(),
            Some("r1")
        );
        assert_eq!(id(r#"{"requestId":"r1","#), None);
        assert_eq!(id(r#"{"requestId":"12345"}"#), None);
        assert_eq!(id(r#"{"requestId":""}"#), None);
        assert_eq!(id(r#"["requestId"]"#), None);
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let limits = FieldLimits::default();
        let ok = Envelope::parse_batch(br#"[{"action":"a"},{"action":"b"}]"#, limits).unwrap();
        assert_eq!(ok.len(), 2);
        let one = Envelope::parse_batch(br#"{"action":"a"}"#, limits).unwrap();
        assert_eq!(one.len(), 1);
        let err = Envelope::parse_batch(
            br#"[{"action":"a"},{"recipients":[{"type":"x","value":""}]}]"#,
            limits,
        )
        .unwrap_err();
        assert!(err.to_string().contains("[1]: recipients[0].type"), "{err}");
        assert!(Envelope::parse_batch(b"3", limits).is_err());
    }
}
