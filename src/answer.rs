//! What the hub itself tells one client about its own messages (docs/protocol.md §4.1, §6): an
//! `__error` when one is refused or fails, and a `__reply` when one that asked (with a
//! `requestId`) is done with.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::budget::Budget;
use crate::envelope::Envelope;
use crate::forward::REPLY;
use crate::node::Outbox;

/// The way to one client for the hub's answers. They go on the connection's own queue, so they
/// wait behind what is queued to it already: a client sees events in the order they happened
/// (the broadcast of its own message before the reply that says it was sent).
#[derive(Debug, Clone)]
pub(crate) struct Answers {
    own: Outbox,
    budget: Arc<Budget>,
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    code: &'a str,
    detail: &'a str,
}

impl Answers {
    pub(crate) fn new(own: Outbox, budget: Arc<Budget>) -> Self {
        Self { own, budget }
    }

    /// Tells the client that a message of its was refused or failed, and which one when it
    /// carried a `requestId`.
    pub(crate) fn error(&self, code: &str, detail: &str, request_id: Option<&str>) {
        let envelope = Envelope::system("__error", &ErrorMessage { code, detail });
        self.offer(&envelope, request_id);
    }

    /// Answers the request `request_id` with `message` (`null` when there is none).
    pub(crate) fn reply(&self, request_id: &str, message: Option<Box<RawValue>>) {
        let mut envelope = Envelope::system(REPLY, &());
        if let Some(message) = message {
            envelope.message = message;
        }
        self.offer(&envelope, Some(request_id));
    }

    fn offer(&self, envelope: &Envelope, request_id: Option<&str>) {
        let frame = match request_id {
            Some(id) => envelope.to_answer_frame(id, &self.budget),
            None => envelope.to_frame(&self.budget),
        };
        self.own.offer(frame);
    }
}
