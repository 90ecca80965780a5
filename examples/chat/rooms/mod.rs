//! The chat rooms: the handler the hub forwards socket messages to, each room's recent history,
//! and who is in each room. The action names are those of West Wind Web Connection's chat sample,
//! plus `userlist`.
//!
//! | the hub forwards | the handler |
//! |---|---|
//! | `broadcastchatmessage`, message = the text | answers `broadcastchatmessage` `{user, text, time}` to the room and keeps it in the room's history |
//! | the same with one `user` recipient | answers `broadcastchatmessage` `{user, text, time, to}` to that user's connections in the room and the sender's own; not kept |
//! | `__connect` | sends the connection `initialmessages` (the history, oldest first), then `userlist` (who is in the room, sorted) to the room, or to the newcomer alone when its user was there already |
//! | `__disconnect` | sends `userlist` to the room when the user's last connection there ended |
//!
//! A message that breaks a rule is answered with 403 and the reason, which the sender receives as
//! `__error` `forbidden`. The room is the sender's `groupId` ("lobby" without one: such a socket
//! is put in the lobby when it connects) and the user its `userId` ("anonymous" without one), both
//! as the hub knows them: what the envelope says is ignored.
//!
//! Presence changes are sent with [`Hub::send`] while the rooms are locked, so every socket sees
//! them in the order they happened (answers of forwards from different sockets are routed
//! concurrently, and two `userlist` answers could overtake each other).

mod line;
mod room;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use wshub::{
    ConnectionId, ConnectionInfo, Envelope, Forwarded, Forwarding, Hub, Recipient, RecipientKind,
};

use line::Line;
use room::Room;

/// Where the hub forwards socket messages: a route of this same router, reached in process.
const FORWARD_PATH: &str = "/hub/chat";
/// A chat message, from the page to the handler and from the handler to the room or one user.
const CHAT: &str = "broadcastchatmessage";
/// The room's history, sent to a socket when it opens.
const INITIAL: &str = "initialmessages";
/// Who is in the room: a sorted array of user names.
const USERLIST: &str = "userlist";
const DEFAULT_ROOM: &str = "lobby";
const ANONYMOUS: &str = "anonymous";

/// A hub that forwards chat messages and socket opens and ends to [`router`]'s handler, and lets
/// pages send nothing else: a page cannot bypass the handler by relaying to the room itself.
pub(crate) fn hub() -> Hub {
    Hub::builder()
        .forwarding(
            Forwarding::in_process(FORWARD_PATH)
                .actions([CHAT])
                .connection_events(true),
        )
        .relay_only_through_forwarding()
        .build()
}

/// The handler's route, with the rooms as its state; `hub` is the one built by [`hub`], which
/// the handler sends presence changes through.
pub(crate) fn router(hub: &Hub) -> Router {
    let chat = Chat {
        hub: hub.clone(),
        rooms: Arc::default(),
    };
    Router::new()
        .route(FORWARD_PATH, post(forwarded))
        .with_state(chat)
}

/// The handler's state: every room by name, and the hub to tell rooms who came and went.
#[derive(Debug, Clone)]
struct Chat {
    hub: Hub,
    rooms: Arc<Mutex<HashMap<String, Room>>>,
}

/// Why a message is refused: the sender receives it as `__error` `forbidden`.
type Refusal = String;

async fn forwarded(
    State(chat): State<Chat>,
    Forwarded { envelope, sender }: Forwarded,
) -> Response {
    let outcome = match envelope.action.as_str() {
        CHAT => chat.message(&envelope, &sender),
        "__connect" => Ok(chat.connected(&sender)),
        "__disconnect" => Ok(chat.disconnected(&sender)),
        // The hub forwards nothing else; answer anyway.
        _ => Err("unknown action".to_owned()),
    };
    outcome.unwrap_or_else(|reason| (StatusCode::FORBIDDEN, reason).into_response())
}

impl Chat {
    /// The rooms, locked. A panic elsewhere cannot leave a room half-written: keep serving them.
    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A chat message: to the room, or privately to the one user it names.
    fn message(&self, envelope: &Envelope, sender: &ConnectionInfo) -> Result<Response, Refusal> {
        let line = Line::from_message(envelope, name_of(sender))?;
        let reply = match addressee(envelope)? {
            None => self.to_room(line, room_of(sender)),
            Some(user) => self.to_user(line, user, sender)?,
        };
        Ok(Json(reply).into_response())
    }

    /// A line for the room: kept in its history and sent to everyone in it.
    fn to_room(&self, line: Line, room: &str) -> Envelope {
        self.rooms()
            .entry(room.to_owned())
            .or_default()
            .remember(line.clone());
        Envelope::new(CHAT)
            .with_message(&line)
            .to(Recipient::group(room))
            .from_user(line.user)
            .from_group(room)
    }

    /// A private line: to `user`'s connections in the sender's room, and to the sender's own
    /// there (its other tabs show the conversation too); not kept.
    fn to_user(
        &self,
        mut line: Line,
        user: &str,
        sender: &ConnectionInfo,
    ) -> Result<Envelope, Refusal> {
        if sender.user_id.is_empty() {
            return Err("choose a nickname to send private messages".to_owned());
        }
        let room = room_of(sender);
        let connections: BTreeSet<ConnectionId> = {
            let rooms = self.rooms();
            let Some(state) = rooms
                .get(room)
                .filter(|r| r.connections_of(user).next().is_some())
            else {
                return Err(format!("{user} is not in this room"));
            };
            state
                .connections_of(user)
                .chain(state.connections_of(&sender.user_id))
                .chain([sender.connection_id])
                .collect()
        };
        line.to = Some(user.to_owned());
        let envelope = Envelope::new(CHAT)
            .with_message(&line)
            .from_user(line.user)
            .from_group(room);
        Ok(connections.into_iter().fold(envelope, |envelope, id| {
            envelope.to(Recipient::connection(id))
        }))
    }

    /// A socket opened: it gets the room's history, and the room learns who is in it.
    fn connected(&self, sender: &ConnectionInfo) -> Response {
        let room = room_of(sender);
        let id = sender.connection_id;
        if sender.group_id().is_empty() {
            // So that it hears the lobby it talks to.
            self.hub.join(id, room);
        }
        let mut rooms = self.rooms();
        let state = rooms.entry(room.to_owned()).or_default();
        let newcomer = state.enter(name_of(sender), id);
        self.hub.send(
            &Envelope::new(INITIAL)
                .with_message(&state.history())
                .to(Recipient::connection(id)),
        );
        let to = if newcomer {
            Recipient::group(room)
        } else {
            // Another tab of someone already listed: only it needs the list.
            Recipient::connection(id)
        };
        self.hub.send(&userlist(room, state).to(to));
        StatusCode::NO_CONTENT.into_response()
    }

    /// A socket ended: the room learns when its user has left.
    fn disconnected(&self, sender: &ConnectionInfo) -> Response {
        let room = room_of(sender);
        let mut rooms = self.rooms();
        if let Some(state) = rooms.get_mut(room) {
            if state.leave(name_of(sender), sender.connection_id) {
                self.hub
                    .send(&userlist(room, state).to(Recipient::group(room)));
            }
        }
        StatusCode::NO_CONTENT.into_response()
    }
}

/// `userlist` with who is in `room`, without recipients.
fn userlist(room: &str, state: &Room) -> Envelope {
    Envelope::new(USERLIST)
        .with_message(&state.people())
        .from_group(room)
}

/// The user a chat message is privately for: the value of its one `user` recipient, or `None`
/// when it has none (it is for the room). Its other recipients are ignored.
fn addressee(envelope: &Envelope) -> Result<Option<&str>, Refusal> {
    let mut users = envelope
        .recipients
        .iter()
        .filter(|r| r.kind == RecipientKind::User)
        .map(|r| r.value.as_str());
    match (users.next(), users.next()) {
        (None, _) => Ok(None),
        (Some(""), None) => Err("a private message needs a user".to_owned()),
        (Some(user), None) => Ok(Some(user)),
        (Some(_), Some(_)) => Err("a private message goes to one user".to_owned()),
    }
}

/// The sender's room: its `groupId`, or the lobby.
fn room_of(sender: &ConnectionInfo) -> &str {
    match sender.group_id() {
        "" => DEFAULT_ROOM,
        group => group,
    }
}

/// The sender's name: its `userId`, or "anonymous".
fn name_of(sender: &ConnectionInfo) -> &str {
    match sender.user_id.as_str() {
        "" => ANONYMOUS,
        user => user,
    }
}
