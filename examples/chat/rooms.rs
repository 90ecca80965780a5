//! The chat rooms: the handler the hub forwards socket messages to, and each room's recent
//! history. The action names are those of West Wind Web Connection's chat sample.
//!
//! | the hub forwards | the handler answers |
//! |---|---|
//! | `broadcastchatmessage`, message = the text | `broadcastchatmessage` `{user, text, time}` to the room, or 403 and why |
//! | `__connect` | `initialmessages`, the room's history (oldest first), to that connection |
//! | `__disconnect` | 204 |
//!
//! The room is the sender's `groupId` ("lobby" without one) and the user its `userId`
//! ("anonymous" without one), both as the hub knows them: whatever the envelope says is ignored.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use wshub::{Envelope, Forwarded, Forwarding, Hub, Recipient};

/// Where the hub forwards socket messages: a route of this same router, reached in process.
const FORWARD_PATH: &str = "/hub/chat";
/// A chat message, from the page to the handler and from the handler to the room.
const CHAT: &str = "broadcastchatmessage";
/// The room's history, sent to a socket when it opens.
const INITIAL: &str = "initialmessages";
/// Messages kept per room.
const HISTORY: usize = 50;
/// The longest message, in characters.
const MAX_CHARS: usize = 2000;
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

/// The handler's route, with the rooms' history as its state.
pub(crate) fn router() -> Router {
    Router::new()
        .route(FORWARD_PATH, post(forwarded))
        .with_state(Rooms::default())
}

/// One chat message as the room sees it.
#[derive(Debug, Clone, Serialize)]
struct Line {
    /// The sender's trusted user id.
    user: String,
    /// The text, HTML-escaped.
    text: String,
    /// When the server received it, RFC 3339 in UTC.
    time: String,
}

/// The last [`HISTORY`] messages of each room, oldest first.
#[derive(Debug, Clone, Default)]
struct Rooms(Arc<Mutex<HashMap<String, VecDeque<Line>>>>);

impl Rooms {
    fn add(&self, room: &str, line: Line) {
        // A panic elsewhere cannot leave a history half-written: keep serving it.
        let mut rooms = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let history = rooms.entry(room.to_owned()).or_default();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(line);
    }

    fn history(&self, room: &str) -> Vec<Line> {
        let rooms = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .get(room)
            .map_or_else(Vec::new, |h| h.iter().cloned().collect())
    }
}

async fn forwarded(
    State(rooms): State<Rooms>,
    Forwarded { envelope, sender }: Forwarded,
) -> Response {
    let room = match sender.group_id() {
        "" => DEFAULT_ROOM,
        group => group,
    };
    match envelope.action.as_str() {
        CHAT => {
            let line = match chat_line(&envelope, &sender.user_id) {
                Ok(line) => line,
                // The sender receives `__error` `forbidden` with the reason.
                Err(reason) => return (StatusCode::FORBIDDEN, reason).into_response(),
            };
            rooms.add(room, line.clone());
            Json(
                Envelope::new(CHAT)
                    .with_message(&line)
                    .to(Recipient::group(room))
                    .from_user(line.user)
                    .from_group(room),
            )
            .into_response()
        }
        "__connect" => Json(
            Envelope::new(INITIAL)
                .with_message(&rooms.history(room))
                .to(Recipient::connection(sender.connection_id)),
        )
        .into_response(),
        "__disconnect" => StatusCode::NO_CONTENT.into_response(),
        // The hub forwards nothing else; answer anyway.
        _ => (StatusCode::FORBIDDEN, "unknown action").into_response(),
    }
}

/// Checks a chat message's text and makes it a line of the room.
fn chat_line(envelope: &Envelope, user: &str) -> Result<Line, String> {
    let text: String = envelope
        .message_as()
        .map_err(|_| "a chat message is a string".to_owned())?;
    if text.trim().is_empty() {
        return Err("the message is empty".to_owned());
    }
    if text.chars().count() > MAX_CHARS {
        return Err(format!("the message is over {MAX_CHARS} characters"));
    }
    Ok(Line {
        user: if user.is_empty() { ANONYMOUS } else { user }.to_owned(),
        text: escape_html(&text),
        time: rfc3339(SystemTime::now()),
    })
}

/// Escapes `& < > " '`, so the text is inert even in a page that inserts it as HTML.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ`, in UTC; times before 1970 read as 1970-01-01.
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days(secs / 86_400);
    let secs = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`): counted in
/// 400-year eras of 146,097 days, each year starting on March 1 so leap days come last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468; // from 0000-03-01
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(at(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn dates_match_a_day_by_day_count() {
        // Walk 1970..2400 one day at a time, with the leap year rule spelled out.
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..157_000 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let length = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > length {
                (day, month) = (1, month + 1);
                if month > 12 {
                    (month, year) = (1, year + 1);
                }
            }
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
        assert_eq!(escape_html("plain, ünïcode 🙂"), "plain, ünïcode 🙂");
    }
}
