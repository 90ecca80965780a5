//! The chat rooms: the handler the hub forwards socket messages to, each room's recent history,
//! and who is in each room. The action names are those of West Wind Web Connection's chat sample,
//! plus `userlist`, `userjoined`, `userleft` and `refused`.
//!
//! | the hub forwards | the handler |
//! |---|---|
//! | `broadcastchatmessage`, message = the text | answers `broadcastchatmessage` `{user, text, time}` to the room and keeps it in the room's history |
//! | the same with one `user` recipient | answers `broadcastchatmessage` `{user, text, time, to}` to that user's connections in the room and the sender's own; not kept |
//! | `__connect` | lets the connection into its room: sends it `initialmessages` (the history, oldest first) and `userlist` (who is in the room, sorted, itself included), and, when its user was not there yet, sends the rest of the room `userjoined` with the user's name. Or turns it away: answers it `refused` with the reason |
//! | `__disconnect` | when the user's last connection in the room ended, sends the room `userleft` with the user's name, and removes the room if nobody is left in it, history and all |
//!
//! A socket is turned away when its room name or nickname breaks the rules ([`names`]: at most
//! 32 characters, a room of letters, digits, `-` and `_`, a nickname of letters and digits of any
//! script, `-`, `_` and `.`), or when its room is a new one and the chat has [`MAX_ROOMS`] already.
//! It stays open but in no room: the page shows the reason and closes it.
//!
//! The history sent to a newcomer is the room's last 50 messages, fewer when they would take over
//! 32 KiB ([`room`]); a message is at most 2,000 characters ([`line`]).
//!
//! A message that breaks a rule, or comes from a socket that is in no room, is answered with 403
//! and the reason, which the sender receives as `__error` `forbidden`. The room is the sender's
//! `groupId` ("lobby" without one: such a socket is put in the lobby when it is let in) and the
//! user its `userId` ("anonymous" without one), both as the hub knows them: what the envelope
//! says is ignored.
//!
//! Presence is sent with [`Hub::send`] while the rooms are locked, so every socket sees the
//! changes in the order they happened, and a newcomer's `userlist` is followed by exactly the
//! changes after it (answers of forwards from different sockets are routed concurrently, and
//! could overtake each other).

mod line;
mod names;
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
/// Who is in the room: a sorted array of user names, to a socket let in.
const USERLIST: &str = "userlist";
/// A user came into the room (its first connection there): the user's name.
const USERJOINED: &str = "userjoined";
/// A user left the room (its last connection there ended): the user's name.
const USERLEFT: &str = "userleft";
/// Why a socket was not let into its room: a sentence for the page to show.
const REFUSED: &str = "refused";
/// The most rooms at once; a room exists while someone is in it.
pub(crate) const MAX_ROOMS: usize = 100;
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

/// Why a message or a socket is refused: a message's sender receives it as `__error`
/// `forbidden`, a socket turned away as `refused`.
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
            None => self.to_room(line, sender)?,
            Some(user) => self.to_user(line, user, sender)?,
        };
        Ok(Json(reply).into_response())
    }

    /// A line for the room: kept in its history and sent to everyone in it.
    fn to_room(&self, line: Line, sender: &ConnectionInfo) -> Result<Envelope, Refusal> {
        let room = room_of(sender);
        joined(&mut self.rooms(), sender)?.remember(line.clone());
        Ok(Envelope::new(CHAT)
            .with_message(&line)
            .to(Recipient::group(room))
            .from_user(line.user)
            .from_group(room))
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
            let mut rooms = self.rooms();
            let state = joined(&mut rooms, sender)?;
            if state.connections_of(user).next().is_none() {
                return Err(format!("{user} is not in this room"));
            }
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

    /// A socket opened: let in, it gets the room's history and who is there, and the room
    /// learns of its user; turned away, it gets the reason.
    fn connected(&self, sender: &ConnectionInfo) -> Response {
        let (room, name, id) = (room_of(sender), name_of(sender), sender.connection_id);
        let mut rooms = self.rooms();
        if let Err(reason) = admissible(&rooms, room, name) {
            let answer = Envelope::new(REFUSED)
                .with_message(&reason)
                .to(Recipient::connection(id))
                .from_group(room);
            return Json(answer).into_response();
        }
        if sender.group_id().is_empty() {
            // So that it hears the lobby it talks to.
            self.hub.join_local(id, room);
        }
        let state = rooms.entry(room.to_owned()).or_default();
        let newcomer = state.enter(name, id);
        let to_it = Recipient::connection(id);
        self.hub.send(
            &Envelope::new(INITIAL)
                .with_message(&state.history())
                .to(to_it.clone())
                .from_group(room),
        );
        self.hub.send(
            &Envelope::new(USERLIST)
                .with_message(&state.people())
                .to(to_it)
                .from_group(room),
        );
        if newcomer {
            self.hub.send(
                &Envelope::new(USERJOINED)
                    .with_message(name)
                    .to(Recipient::group(room))
                    .to(Recipient::all_but_connection(id))
                    .from_group(room),
            );
        }
        StatusCode::NO_CONTENT.into_response()
    }

    /// A socket ended: the room learns when its user has left, and goes when nobody is left.
    fn disconnected(&self, sender: &ConnectionInfo) -> Response {
        let (room, name) = (room_of(sender), name_of(sender));
        let mut rooms = self.rooms();
        if let Some(state) = rooms.get_mut(room) {
            if state.leave(name, sender.connection_id) {
                self.hub.send(
                    &Envelope::new(USERLEFT)
                        .with_message(name)
                        .to(Recipient::group(room))
                        .from_group(room),
                );
                if state.is_empty() {
                    rooms.remove(room);
                }
            }
        }
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Whether a socket of `name` may come into `room`: both names follow the rules, and the room
/// exists or there is space for it.
fn admissible(rooms: &HashMap<String, Room>, room: &str, name: &str) -> Result<(), Refusal> {
    names::check_room(room)?;
    names::check_nickname(name)?;
    if rooms.len() >= MAX_ROOMS && !rooms.contains_key(room) {
        return Err(format!(
            "the chat has {MAX_ROOMS} rooms, its limit: join one of them, or try again later"
        ));
    }
    Ok(())
}

/// The sender's room, when the sender was let into it.
fn joined<'a>(
    rooms: &'a mut HashMap<String, Room>,
    sender: &ConnectionInfo,
) -> Result<&'a mut Room, Refusal> {
    rooms
        .get_mut(room_of(sender))
        .filter(|state| state.has(name_of(sender), sender.connection_id))
        .ok_or_else(|| "you are not in a room".to_owned())
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
