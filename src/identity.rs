//! Who a connection is. For now the query string (`?groupId=G&userId=U`) says so; an identity
//! resolver installed by the application will take precedence over it (PROTOCOL.md §3).

use crate::hub::Identity;

/// Reads `groupId` and `userId` from a query string, percent-decoded (`+` is a space, as browsers
/// encode forms). Missing parameters are empty; the last occurrence of a repeated one wins.
pub(crate) fn from_query(query: Option<&str>) -> Identity {
    let mut identity = Identity::default();
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(key).as_str() {
            "groupId" => identity.group_id = decode(value),
            "userId" => identity.user_id = decode(value),
            _ => {}
        }
    }
    identity
}

/// Percent-decodes; a malformed escape is kept as it stands and invalid UTF-8 is replaced,
/// since an identity must not fail a connection over a typo.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) if hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) => {
                        out.push(byte);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_decodes_both_parameters() {
        let id = from_query(Some("groupId=room%201&userId=J%C3%BCrgen+K&x=1"));
        assert_eq!(id.group_id, "room 1");
        assert_eq!(id.user_id, "Jürgen K");
    }

    #[test]
    fn missing_or_malformed_is_lenient() {
        assert_eq!(from_query(None), Identity::default());
        assert_eq!(from_query(Some("userId")).user_id, "");
        assert_eq!(from_query(Some("userId=100%")).user_id, "100%");
        assert_eq!(from_query(Some("userId=%+1%zz")).user_id, "% 1%zz");
        assert_eq!(from_query(Some("userId=%FF")).user_id, "\u{FFFD}");
    }
}
