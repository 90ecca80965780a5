//! The browser client, served by the layer next to the socket path: `<path>/wshub.js` (an ES
//! module) and `<path>/wshub.d.ts` (its types). Embedded at compile time from `client/`.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

struct File {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const FILES: [File; 2] = [
    File {
        name: "wshub.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../client/wshub.js"),
    },
    File {
        name: "wshub.d.ts",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../client/wshub.d.ts"),
    },
];

/// The answer to a request for `name` under the socket path, or `None` when it is no client
/// file (or the method is not GET/HEAD): the request then goes to the application.
pub(crate) fn serve(name: &str, method: &Method, headers: &HeaderMap) -> Option<Response<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let (index, file) = FILES.iter().enumerate().find(|(_, f)| f.name == name)?;
    let etag = &etags()[index];
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut response = if fresh {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else if method == Method::HEAD {
        Response::new(Bytes::new())
    } else {
        Response::new(Bytes::from_static(file.body.as_bytes()))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    // Revalidate every time: a page must not keep an old client after the server is upgraded,
    // and with the ETag a revalidation costs a 304.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    Some(response)
}

/// One strong ETag per file: a hash of its content, computed once.
fn etags() -> &'static [String; 2] {
    static ETAGS: OnceLock<[String; 2]> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .each_ref()
            .map(|f| format!("\"{:016x}\"", fnv1a(f.body.as_bytes())))
    })
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_module_with_etag_and_answers_304_when_unchanged() {
        let response = serve("wshub.js", &Method::GET, &HeaderMap::new()).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(response.body().as_ref(), FILES[0].body.as_bytes());
        let etag = response.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        let again = serve("wshub.js", &Method::GET, &headers).unwrap();
        assert_eq!(again.status(), 304);
        assert!(again.body().is_empty());
        assert!(serve("other.js", &Method::GET, &HeaderMap::new()).is_none());
        assert!(serve("wshub.js", &Method::POST, &HeaderMap::new()).is_none());
    }
}
