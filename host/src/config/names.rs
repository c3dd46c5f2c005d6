//! Values the configuration checks where they stand: names, methods, paths, addresses.
//!
//! Each is a newtype that serde builds with `try_from`, so a bad value is refused while the
//! file is read, with toml pointing at it; the check's message is the whole error.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::model::{RouteConfig, TelemetryConfig};

/// A string newtype checked by `$check`, which may also normalize it.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
        #[serde(try_from = "String")]
        pub(crate) struct $name(pub(crate) String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                let check: fn(String) -> Result<String, String> = $check;
                check(value).map(Self)
            }
        }
    };
}

checked_string!(
    /// `[a-z0-9][a-z0-9_-]*`: a plugin's name names files, consumer groups and metrics.
    PluginName,
    |name| check_plugin_name(&name).map(|()| name)
);
checked_string!(
    /// Kafka's rule: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
    TopicName,
    |name| check_topic_name(&name).map(|()| name)
);
checked_string!(
    /// One of [`RouteConfig::METHODS`], upper-cased.
    Method,
    |method| check_method(&method)
);
checked_string!(
    /// Anything but blank.
    NonEmpty,
    |text| match text.trim().is_empty() {
        true => Err("an empty string, expected a value".to_owned()),
        false => Ok(text),
    }
);
checked_string!(
    /// The bearer token of the admin routes: long enough not to be guessed.
    AdminToken,
    |token| match token.trim().chars().count() < 16 {
        true => Err("an admin token of fewer than 16 characters, expected at least 16".to_owned()),
        false => Ok(token),
    }
);
checked_string!(
    /// A `postgres://` or `postgresql://` URL.
    PostgresUrl,
    |url| match url.starts_with("postgres://") || url.starts_with("postgresql://") {
        true => Ok(url),
        false => Err(format!(
            "{url:?} is not a PostgreSQL url, expected postgres://USER@HOST:PORT/DATABASE"
        )),
    }
);
checked_string!(
    /// The base URL of an OTLP/HTTP collector; see [`TelemetryConfig::check_endpoint`].
    OtlpEndpoint,
    |url| TelemetryConfig::check_endpoint(&url)
);
checked_string!(
    /// An origin as a browser sends it in `Origin`, lower-cased.
    Origin,
    |origin| check_origin(&origin)
);
checked_string!(
    /// An HTTP header name, lower-cased.
    HeaderName,
    |name| check_header(&name)
);

/// An `ip:port` to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct Address(pub(crate) SocketAddr);

impl TryFrom<String> for Address {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(Self).map_err(|_| {
            format!(
                "invalid address {text:?}, expected ip:port such as \"127.0.0.1:8080\" or \"[::1]:8080\""
            )
        })
    }
}

/// A route's path, checked by [`check_route_path`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct RoutePath {
    pub(crate) path: String,
    /// The path with every parameter name blanked out (`/cart/{}`): what the router matches.
    pub(crate) shape: String,
}

impl TryFrom<String> for RoutePath {
    type Error = String;
    fn try_from(path: String) -> Result<Self, String> {
        let shape = check_route_path(&path)?;
        Ok(Self { path, shape })
    }
}

/// Plugin names are `[a-z0-9][a-z0-9_-]*`: they name files, consumer groups and metrics.
fn check_plugin_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid plugin name {name:?}, expected lower-case letters, digits, '-' and '_', \
             starting with a letter or digit"
        ))
    }
}

/// Kafka's rule for topic names: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub(crate) fn check_topic_name(name: &str) -> Result<(), String> {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if name.is_empty() || name.len() > 249 || !chars_ok || name == "." || name == ".." {
        Err(format!(
            "invalid topic name {name:?}, expected 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'"
        ))
    } else {
        Ok(())
    }
}

/// The upper-cased method, if it is one of [`RouteConfig::METHODS`].
fn check_method(method: &str) -> Result<String, String> {
    let upper = method.to_ascii_uppercase();
    if RouteConfig::METHODS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "unknown method {method:?}, expected one of {}",
            RouteConfig::METHODS.join(", ")
        ))
    }
}

/// Checks a route path in axum syntax: `/`-led, no empty inner segment, parameters `{name}`
/// that fill a whole segment with unique names, and an optional catch-all `{*name}` last.
fn check_route_path(path: &str) -> Result<String, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path {path:?} must start with '/'"));
    };
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
    {
        return Err(format!("path {path:?} must not contain {c:?}"));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let mut seen = BTreeSet::new();
    let mut shape = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        shape.push('/');
        if segment.is_empty() && !last {
            return Err(format!("path {path:?} has an empty segment"));
        }
        if segment.is_empty() && segments.len() > 1 {
            // The router ignores a trailing '/', so "/a/" would be "/a" under another name.
            return Err(format!("path {path:?} must not end with '/'"));
        }
        if !segment.contains(['{', '}']) {
            shape.push_str(segment);
            continue;
        }
        let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            return Err(format!(
                "segment {segment:?} of path {path:?} mixes text and braces, \
                 expected a whole segment \"{{name}}\""
            ));
        };
        let (name, catch_all) = match inner.strip_prefix('*') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if name.is_empty() {
            return Err(format!(
                "segment {segment:?} of path {path:?} has no parameter name"
            ));
        }
        let name_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(format!(
                "invalid parameter name {name:?} in path {path:?}, expected letters, digits \
                 and '_', not starting with a digit"
            ));
        }
        if catch_all && !last {
            return Err(format!(
                "catch-all {segment:?} of path {path:?} must be the last segment"
            ));
        }
        if !seen.insert(name) {
            return Err(format!("parameter {name:?} appears twice in path {path:?}"));
        }
        shape.push_str(if catch_all { "{*}" } else { "{}" });
    }
    if let Some(host) = HOST_PATHS
        .iter()
        .find(|host| path == **host || path.starts_with(&format!("{host}/")))
    {
        return Err(format!(
            "path {path:?} is served by the host itself ({host}), expected another path"
        ));
    }
    Ok(shape)
}

/// Paths the host serves before any plugin route, so a plugin route there would never run.
const HOST_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/admin"];

/// An origin as a browser sends it in `Origin`: `http` or `https`, a host, an optional port,
/// nothing after. Scheme and host are case-insensitive, so it is kept lower-cased.
fn check_origin(origin: &str) -> Result<String, String> {
    no_star_in_list(origin)?;
    let lower = origin.to_ascii_lowercase();
    let host_port = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let (host, port) = match host_port {
        Some(rest) if rest.starts_with('[') => match rest.split_once(']') {
            Some((v6, after)) => (&v6[1..], after.strip_prefix(':')),
            None => ("", None),
        },
        Some(rest) => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
        None => ("", None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    let rest_ok = host_port.is_some_and(|rest| !rest.contains(['/', '?', '#']));
    if host_ok && port_ok && rest_ok {
        Ok(lower)
    } else {
        Err(format!(
            "invalid origin {origin:?}, expected scheme://host[:port] such as \
             \"http://localhost:4200\", with no path or trailing slash"
        ))
    }
}

/// A header name (an HTTP token), kept lower-cased.
fn check_header(name: &str) -> Result<String, String> {
    no_star_in_list(name)?;
    let token = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    if token {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "invalid header name {name:?}, expected a name such as \"content-type\""
        ))
    }
}

/// `"*"` stands alone for any; in a list it would read as a literal value.
fn no_star_in_list(item: &str) -> Result<(), String> {
    match item {
        "*" => Err("\"*\" cannot be in a list, expected \"*\" alone for any".to_owned()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names() {
        for ok in ["cart", "payment-v2", "a_b", "0day"] {
            assert_eq!(check_plugin_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Cart", "-cart", "_x", "a.b", "ca rt", "é"] {
            assert!(check_plugin_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_names() {
        for ok in ["orders", "orders.dlq", "A_b-1", &"x".repeat(249)] {
            assert_eq!(check_topic_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", &"x".repeat(250)] {
            assert!(check_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_are_upper_cased() {
        assert_eq!(check_method("post"), Ok("POST".to_owned()));
        assert_eq!(
            check_method("FETCH"),
            Err(
                "unknown method \"FETCH\", expected one of GET, POST, PUT, DELETE, PATCH, \
                 HEAD, OPTIONS"
                    .to_owned()
            )
        );
    }

    #[test]
    fn route_paths_and_shapes() {
        assert_eq!(
            check_route_path("/api/cart/{cartId}/items/{*rest}").unwrap(),
            "/api/cart/{}/items/{*}"
        );
        assert_eq!(check_route_path("/").unwrap(), "/");
    }

    #[test]
    fn bad_route_paths() {
        let cases = [
            ("api", "path \"api\" must start with '/'"),
            ("", "path \"\" must start with '/'"),
            ("/a//b", "path \"/a//b\" has an empty segment"),
            ("/a/", "path \"/a/\" must not end with '/'"),
            (
                "/healthz",
                "path \"/healthz\" is served by the host itself (/healthz), expected another path",
            ),
            (
                "/a/{}",
                "segment \"{}\" of path \"/a/{}\" has no parameter name",
            ),
            (
                "/a/{x}/{x}",
                "parameter \"x\" appears twice in path \"/a/{x}/{x}\"",
            ),
            (
                "/a/b{x}",
                "segment \"b{x}\" of path \"/a/b{x}\" mixes text and braces, expected a whole segment \"{name}\"",
            ),
            (
                "/a/{1x}",
                "invalid parameter name \"1x\" in path \"/a/{1x}\", expected letters, digits and '_', not starting with a digit",
            ),
            (
                "/{*a}/b",
                "catch-all \"{*a}\" of path \"/{*a}/b\" must be the last segment",
            ),
            ("/a?b=1", "path \"/a?b=1\" must not contain '?'"),
        ];
        for (path, message) in cases {
            assert_eq!(check_route_path(path), Err(message.to_owned()), "{path}");
        }
    }
}
