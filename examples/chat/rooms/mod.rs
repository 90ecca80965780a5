//! The chat rooms: the handler the hub forwards socket messages to, each room's recent history,
//! and who is in each room. The action names are those of West Wind Web Connection's chat sample,
//! plus `userlist`, `userjoined`, `userleft` and `refused`.
//!
//! | the hub forwards | the handler |
//! |---|---|
//! | `broadcastchatmessage`, message = the text | answers `broadcastchatmessage` `{user, text, time}` to the room and keeps it in the room's history; replies `{"sent": time}` to the sender's request |
//! | the same with one `user` recipient | answers `broadcastchatmessage` `{user, text, time, to}` to that user's connections in the room and the sender's own; not kept; replies as above |
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
//! A message that breaks a rule, or comes from a socket that is in no room, is refused with the
//! reason ([`Reply::refuse`]), which the sender's request rejects with (`__error` `forbidden`):
//! the page keeps the text and says why. The room is the sender's
//! `groupId` ("lobby" without one: such a socket is put in the lobby when it is let in) and the
//! user its `userId` ("anonymous" without one), both as the hub knows them: what the envelope
//! says is ignored.
//!
//! Presence is sent with [`Hub::send`] while the rooms are locked, so every socket sees the
//! changes in the order they happened, and a newcomer's `userlist` is followed by exactly the
//! changes after it (answers of forwards from different sockets are routed concurrently, and
//! could overtake each other).
//!
//! Run as a cluster (`WSHUB_REDIS_URL`), the rooms live in Redis ([`store`]), and every node of
//! the chat sees the same rooms, people and history.

mod line;
mod names;
mod room;
mod store;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use wshub::{
    ConnectionId, ConnectionInfo, Envelope, Forwarded, Forwarding, Hub, Recipient, RecipientKind,
    Reply,
};

use line::Line;
pub(crate) use store::Store;

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
    builder().build()
}

/// The same hub, one node of a cluster on Redis; its rooms go in [`Store::Redis`].
#[cfg(feature = "cluster")]
pub(crate) fn clustered(url: &str) -> Result<(Hub, Store), String> {
    let cluster = wshub::RedisCluster::new(url).map_err(|e| e.to_string())?;
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let hub = builder().cluster(cluster).build();
    Ok((
        hub,
        Store::Redis(Box::new(store::shared::Shared::new(client))),
    ))
}

fn builder() -> wshub::HubBuilder {
    Hub::builder()
        .forwarding(
            Forwarding::in_process(FORWARD_PATH)
                .actions([CHAT])
                .connection_events(true),
        )
        .relay_only_through_forwarding()
}

/// The handler's route, with the rooms in `store` as its state; `hub` is the one built by
/// [`hub`] (or [`clustered`]), which the handler sends presence changes through. A store shared
/// (`Arc<Store>`) can be read elsewhere too: the status page counts who is in each room.
pub(crate) fn router_on(hub: &Hub, store: impl Into<Arc<Store>>) -> Router {
    let chat = Chat {
        hub: hub.clone(),
        rooms: store.into(),
    };
    Router::new()
        .route(FORWARD_PATH, post(forwarded))
        .with_state(chat)
}

/// The handler's state: every room by name, and the hub to tell rooms who came and went.
#[derive(Debug, Clone)]
struct Chat {
    hub: Hub,
    rooms: Arc<Store>,
}

/// Why a message or a socket is refused: a message's sender receives it as `__error`
/// `forbidden`, a socket turned away as `refused`.
type Refusal = String;

async fn forwarded(
    State(chat): State<Chat>,
    Forwarded { envelope, sender }: Forwarded,
) -> Response {
    let outcome = match envelope.action.as_str() {
        CHAT => chat
            .message(&envelope, &sender)
            .await
            .map(IntoResponse::into_response),
        "__connect" => Ok(chat.connected(&sender).await),
        "__disconnect" => Ok(chat.disconnected(&sender).await),
        // The hub forwards nothing else; answer anyway.
        _ => Err("unknown action".to_owned()),
    };
    outcome.unwrap_or_else(|reason| Reply::refuse(reason).into_response())
}

impl Chat {
    /// A chat message: to the room, or privately to the one user it names. The sender's page
    /// learns that it was sent, and when, once it is on its way.
    async fn message(
        &self,
        envelope: &Envelope,
        sender: &ConnectionInfo,
    ) -> Result<Reply, Refusal> {
        let line = Line::from_message(envelope, name_of(sender))?;
        let sent = serde_json::json!({ "sent": line.time });
        let routed = match addressee(envelope)? {
            None => self.to_room(line, sender).await?,
            Some(user) => self.to_user(line, user, sender).await?,
        };
        Ok(Reply::with(&sent).and(routed))
    }

    /// A line for the room: kept in its history and sent to everyone in it.
    async fn to_room(&self, line: Line, sender: &ConnectionInfo) -> Result<Envelope, Refusal> {
        let (room, name, id) = (room_of(sender), name_of(sender), sender.connection_id);
        self.rooms.remember(room, name, id, &line).await?;
        Ok(Envelope::new(CHAT)
            .with_message(&line)
            .to(Recipient::group(room))
            .from_user(line.user)
            .from_group(room))
    }

    /// A private line: to `user`'s connections in the sender's room, and to the sender's own
    /// there (its other tabs show the conversation too); not kept.
    async fn to_user(
        &self,
        mut line: Line,
        user: &str,
        sender: &ConnectionInfo,
    ) -> Result<Envelope, Refusal> {
        if sender.user_id.is_empty() {
            return Err("choose a nickname to send private messages".to_owned());
        }
        let (room, name, id) = (room_of(sender), name_of(sender), sender.connection_id);
        let connections: BTreeSet<ConnectionId> = self
            .rooms
            .private(room, name, id, user)
            .await?
            .into_iter()
            .chain([id])
            .collect();
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
    async fn connected(&self, sender: &ConnectionInfo) -> Response {
        let (room, name, id) = (room_of(sender), name_of(sender), sender.connection_id);
        let admitted = match admissible(room, name) {
            Ok(()) => {
                self.rooms
                    .enter(room, name, id, |entered| self.welcome(sender, entered))
                    .await
            }
            Err(reason) => Err(reason),
        };
        if let Err(reason) = admitted {
            let answer = Envelope::new(REFUSED)
                .with_message(&reason)
                .to(Recipient::connection(id))
                .from_group(room);
            return Json(answer).into_response();
        }
        StatusCode::NO_CONTENT.into_response()
    }

    /// Tells a socket let in what the room holds and who is there, and the room that its user
    /// came, if the user was not there yet.
    fn welcome(&self, sender: &ConnectionInfo, entered: &store::Entered) {
        let (room, name, id) = (room_of(sender), name_of(sender), sender.connection_id);
        if sender.group_id().is_empty() {
            // So that it hears the lobby it talks to.
            self.hub.join_local(id, room);
        }
        let to_it = Recipient::connection(id);
        self.hub.send(
            &Envelope::new(INITIAL)
                .with_message(&entered.history)
                .to(to_it.clone())
                .from_group(room),
        );
        self.hub.send(
            &Envelope::new(USERLIST)
                .with_message(&entered.people)
                .to(to_it)
                .from_group(room),
        );
        if entered.newcomer {
            self.hub.send(
                &Envelope::new(USERJOINED)
                    .with_message(name)
                    .to(Recipient::group(room))
                    .to(Recipient::all_but_connection(id))
                    .from_group(room),
            );
        }
    }

    /// A socket ended: the room learns when its user has left, and goes when nobody is left.
    async fn disconnected(&self, sender: &ConnectionInfo) -> Response {
        let (room, name, id) = (room_of(sender), name_of(sender), sender.connection_id);
        self.rooms
            .leave(room, name, id, |left| {
                if left {
                    self.hub.send(
                        &Envelope::new(USERLEFT)
                            .with_message(name)
                            .to(Recipient::group(room))
                            .from_group(room),
                    );
                }
            })
            .await;
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Whether a socket of `name` may come into `room`: both names follow the rules (whether the
/// room exists or there is space for it is the store's to say).
fn admissible(room: &str, name: &str) -> Result<(), Refusal> {
    names::check_room(room)?;
    names::check_nickname(name)
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
