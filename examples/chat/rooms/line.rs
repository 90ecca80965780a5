//! One chat line: what a message becomes once the handler has checked it, with the text
//! HTML-escaped and the server's time.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wshub::Envelope;

/// The longest message, in characters.
pub(crate) const MAX_CHARS: usize = 2000;

/// One chat message as its readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Line {
    /// The sender's trusted user id (its display name).
    pub(crate) user: String,
    /// The text, HTML-escaped.
    pub(crate) text: String,
    /// When the server received it, RFC 3339 in UTC.
    pub(crate) time: String,
    /// For a private message, the user it was sent to; absent for the room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<String>,
}

impl Line {
    /// Checks a chat message's text (a non-blank string of at most [`MAX_CHARS`] characters)
    /// and makes it a line from `user`, or says why not.
    pub(crate) fn from_message(envelope: &Envelope, user: &str) -> Result<Self, String> {
        let text: String = envelope
            .message_as()
            .map_err(|_| "a chat message is a string".to_owned())?;
        if text.trim().is_empty() {
            return Err("the message is empty".to_owned());
        }
        if text.chars().count() > MAX_CHARS {
            return Err(format!("the message is over {MAX_CHARS} characters"));
        }
        Ok(Self {
            user: user.to_owned(),
            text: escape_html(&text),
            time: rfc3339(SystemTime::now()),
            to: None,
        })
    }
}

/// Escapes `& < > " '`, so the text is inert even in a page that inserts it as HTML.
pub(crate) fn escape_html(text: &str) -> String {
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
pub(crate) fn rfc3339(time: SystemTime) -> String {
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

    #[test]
    fn a_line_without_addressee_has_no_to_field() {
        let line = Line {
            user: "ann".into(),
            text: "hi".into(),
            time: "2025-01-01T00:00:00Z".into(),
            to: None,
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"user":"ann","text":"hi","time":"2025-01-01T00:00:00Z"}"#
        );
        let private = Line {
            to: Some("bob".into()),
            ..line
        };
        assert!(serde_json::to_string(&private)
            .unwrap()
            .ends_with(r#","to":"bob"}"#));
    }
}
