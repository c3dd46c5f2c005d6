//! Syntax of names and patterns in the configuration: plugin and topic names, HTTP methods,
//! route paths. Each check returns the error message for the offending value.

use std::collections::BTreeSet;

use super::model::RouteConfig;

/// Plugin names are `[a-z0-9][a-z0-9_-]*`: they name files, consumer groups and metrics.
pub(crate) fn check_plugin_name(name: &str) -> Result<(), String> {
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
pub(crate) fn check_method(method: &str) -> Result<String, String> {
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

/// A checked route path: its parameter names and its shape, the path with every parameter
/// name blanked out (`/cart/{}`), which is what the router matches on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RoutePath {
    pub(crate) params: Vec<String>,
    pub(crate) shape: String,
}

/// Checks a route path in axum syntax: `/`-led, no empty inner segment, parameters `{name}`
/// that fill a whole segment with unique names, and an optional catch-all `{*name}` last.
pub(crate) fn check_route_path(path: &str) -> Result<RoutePath, String> {
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
    let mut params = Vec::new();
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
        params.push(name.to_owned());
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
    Ok(RoutePath { params, shape })
}

/// Paths the host serves before any plugin route, so a plugin route there would never run.
const HOST_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/admin"];

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
        let path = check_route_path("/api/cart/{cartId}/items/{*rest}").unwrap();
        assert_eq!(path.params, ["cartId", "rest"]);
        assert_eq!(path.shape, "/api/cart/{}/items/{*}");
        assert_eq!(check_route_path("/").unwrap().shape, "/");
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
