//! The rules for room names and nicknames: short, and made of characters that need no escaping
//! anywhere a page puts them (text, attributes, URLs).

/// The longest room name or nickname, in characters.
pub(crate) const MAX_CHARS: usize = 32;

/// A room name is 1 to [`MAX_CHARS`] ASCII letters, digits, `-` or `_`.
pub(crate) fn check_room(room: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if fits(room, allowed) {
        Ok(())
    } else {
        Err(format!(
            "a room name is 1 to {MAX_CHARS} letters (a-z, A-Z), digits, '-' or '_'"
        ))
    }
}

/// A nickname is 1 to [`MAX_CHARS`] letters or digits of any script, `-`, `_` or `.`.
pub(crate) fn check_nickname(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || c == '-' || c == '_' || c == '.';
    if fits(name, allowed) {
        Ok(())
    } else {
        Err(format!(
            "a nickname is 1 to {MAX_CHARS} letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Whether `name` has 1 to [`MAX_CHARS`] characters, all `allowed`.
fn fits(name: &str, allowed: impl Fn(char) -> bool) -> bool {
    (1..=MAX_CHARS).contains(&name.chars().count()) && name.chars().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_short_and_plain() {
        for good in ["lobby", "a", "Room_2-b", &"r".repeat(32)] {
            assert_eq!(check_room(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            &"r".repeat(33),
            "two words",
            "café",
            "a/b",
            "<b>",
            "a.b",
        ] {
            assert!(check_room(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nicknames_are_short_words_of_any_script() {
        for good in ["ann", "Jürgen.K", "Łukasz_2", "山田-太郎", &"é".repeat(32)] {
            assert_eq!(check_nickname(good), Ok(()), "{good}");
        }
        let zero_width = "ann\u{200b}";
        for bad in [
            "",
            &"é".repeat(33),
            "ann smith",
            "<b>",
            "a&b",
            "\"q\"",
            zero_width,
        ] {
            assert!(check_nickname(bad).is_err(), "{bad}");
        }
    }
}
