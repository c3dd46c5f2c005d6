//! HTTP requests and responses, with the small amount of parsing plugins need.

use serde::Serialize;

use crate::{Request, Response};

impl Request {
    /// A request with the given method and target (`/path?query`), for tests.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            ..Self::default()
        }
    }

    /// Sets the body, for tests.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The value of route parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find_map(|(k, v)| (k == name).then_some(v.as_str()))
    }

    /// The decoded value of query parameter `name` (first occurrence).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true) == name).then(|| percent_decode(v, true))
        })
    }

    /// The decoded, non-empty path segments. Plugins match on these rather than on parameter
    /// names, so they work whatever names and prefix the deployment's route table uses.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect()
    }
}

impl Response {
    /// A response with `value` serialized as JSON.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::with_type(status, "application/json", body),
            Err(e) => Self::message(500, &format!("cannot encode response: {e}")),
        }
    }

    /// A JSON error (or notice) of the form `{"message": ..., "status": ...}`, the shape of the
    /// host's own errors.
    pub fn message(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "message": message, "status": status }).to_string();
        Self::with_type(status, "application/json", body.into_bytes())
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::with_type(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }

    fn with_type(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body,
        }
    }

    /// The body parsed as JSON, for tests.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Decodes `%XX` escapes (and `+` as a space in query strings). Malformed escapes are kept as
/// they are and invalid UTF-8 is replaced, since this only ever feeds lookups.
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_as_space => out.push(b' '),
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
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%20b%2Fc", false), "a b/c");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("caf%C3%A9", false), "café");
    }

    #[test]
    fn reads_query_and_segments() {
        let req = Request::new("GET", "/api//cart/a%20b/?key=x%3Dy&flag&topic=t+1");
        assert_eq!(req.segments(), ["api", "cart", "a b"]);
        assert_eq!(req.query_param("key").as_deref(), Some("x=y"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("topic").as_deref(), Some("t 1"));
        assert_eq!(req.query_param("missing"), None);
    }

    #[test]
    fn builds_json_responses() {
        let res = Response::message(404, "no \"such\" thing");
        assert_eq!(res.status, 404);
        assert_eq!(
            res.headers,
            [("content-type".into(), "application/json".into())]
        );
        assert_eq!(res.body_json()["message"], "no \"such\" thing");
        assert_eq!(res.body_json()["status"], 404);
    }
}
