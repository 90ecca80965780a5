//! The HTTP request a forwarded envelope becomes.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};

use crate::envelope::FieldLimits;
use crate::info::ConnectionInfo;

/// The sender's connection id. Set only by the hub: incoming requests lose any such header.
pub(crate) const CONNECTION_ID: HeaderName = HeaderName::from_static("wshub-connection-id");
/// The sender's user id, percent-encoded beyond visible ASCII.
pub(crate) const USER_ID: HeaderName = HeaderName::from_static("wshub-user-id");
/// The sender's group id, percent-encoded beyond visible ASCII.
pub(crate) const GROUP_ID: HeaderName = HeaderName::from_static("wshub-group-id");
/// The data the identity resolver attached to the sender, as JSON in ASCII (`\u` escapes).
pub(crate) const CONNECTION_DATA: HeaderName = HeaderName::from_static("wshub-connection-data");

/// The headers by which the hub tells the application who sent a message: set only by the hub,
/// removed from every request that comes in from the network.
pub(crate) const IDENTITY_HEADERS: [HeaderName; 4] =
    [CONNECTION_ID, USER_ID, GROUP_ID, CONNECTION_DATA];

/// `POST uri` with the envelope as body, the sender's identity headers, the headers copied from
/// the upgrade request, the configured fixed headers, and (for in-process forwards, where the
/// application reads them with the extractor) the sender and the hub's field limits as request
/// extensions.
pub(crate) fn build(
    uri: &Uri,
    body: Bytes,
    sender: &ConnectionInfo,
    limits: FieldLimits,
    copied: &HeaderMap,
    extra: &HeaderMap,
) -> Request<Bytes> {
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.extend(copied.iter().map(|(n, v)| (n.clone(), v.clone())));
    headers.extend(extra.iter().map(|(n, v)| (n.clone(), v.clone())));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        CONNECTION_ID,
        header_text(&sender.connection_id.to_string()),
    );
    headers.insert(USER_ID, header_text(&sender.user_id));
    headers.insert(GROUP_ID, header_text(sender.group_id()));
    let data = sender
        .data
        .ascii_json()
        .map(|json| HeaderValue::from_str(&json));
    if let Some(Ok(data)) = data {
        headers.insert(CONNECTION_DATA, data);
    }
    request.extensions_mut().insert(sender.clone());
    request.extensions_mut().insert(limits);
    request
}

/// Percent-encodes what a header value cannot carry as visible ASCII (and `%` itself).
fn header_text(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' || byte == b' ' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    // Only visible ASCII and spaces remain, which a header value always accepts.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_are_percent_encoded_beyond_ascii() {
        assert_eq!(header_text("ann"), "ann");
        assert_eq!(header_text("Jürgen 100%"), "J%C3%BCrgen 100%25");
        assert_eq!(header_text("a\r\nb"), "a%0D%0Ab");
    }
}
