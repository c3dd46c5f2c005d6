//! `[server.cors]` → [`CorsConfig`]: origins as browsers send them, known methods, header
//! names, and no credentials for any origin.

use std::time::Duration;

use serde_spanned::Spanned;

use super::error::ConfigError;
use super::model::{Allowed, CorsConfig};
use super::names::check_method;
use super::raw::{AnyOrList, RawCors};
use super::source::Source;

pub(super) fn cors(raw: &RawCors, src: &Source) -> Result<CorsConfig, ConfigError> {
    let origins = allowed(src, "server.cors.origins", &raw.origins, check_origin)?;
    if origins == Allowed::Only(Vec::new()) {
        return Err(src.error(
            raw.origins.span(),
            "server.cors.origins",
            "is empty, expected at least one origin, or \"*\" for any",
        ));
    }
    let methods = match &raw.methods {
        None => CorsConfig::DEFAULT_METHODS
            .iter()
            .map(|m| m.to_string())
            .collect(),
        Some(list) if list.get_ref().is_empty() => {
            return Err(src.error(
                list.span(),
                "server.cors.methods",
                "is empty, expected at least one method",
            ));
        }
        Some(list) => list
            .get_ref()
            .iter()
            .enumerate()
            .map(|(i, method)| {
                check_method(method.get_ref()).map_err(|msg| {
                    src.error(method.span(), format!("server.cors.methods[{i}]"), msg)
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let headers = match &raw.headers {
        Some(headers) => allowed(src, "server.cors.headers", headers, check_header)?,
        None => Allowed::Any,
    };
    let max_age = match &raw.max_age_secs {
        Some(secs) => {
            let age = Duration::from_secs(*secs.get_ref());
            if age > CorsConfig::MAX_AGE_LIMIT {
                return Err(src.error(
                    secs.span(),
                    "server.cors.max_age_secs",
                    format!(
                        "expected at most {} (a day; browsers cap it there or lower), found {}",
                        CorsConfig::MAX_AGE_LIMIT.as_secs(),
                        secs.get_ref()
                    ),
                ));
            }
            Some(age)
        }
        None => None,
    };
    let credentials = raw.credentials.unwrap_or(false);
    if credentials && origins == Allowed::Any {
        return Err(src.error(
            raw.origins.span(),
            "server.cors.origins",
            "is \"*\" with credentials = true, expected a list of origins: \
             with credentials, any site could act for the signed-in user",
        ));
    }
    Ok(CorsConfig {
        origins,
        methods,
        headers,
        max_age,
        credentials,
    })
}

/// `"*"` → [`Allowed::Any`]; a list → each item checked by `check`.
fn allowed(
    src: &Source,
    key: &str,
    value: &Spanned<AnyOrList>,
    check: fn(&str) -> Result<String, String>,
) -> Result<Allowed, ConfigError> {
    match value.get_ref() {
        AnyOrList::One(any) if any == "*" => Ok(Allowed::Any),
        AnyOrList::One(other) => Err(src.error(
            value.span(),
            key,
            format!("expected \"*\" or a list, found {other:?}; write [{other:?}] for just that"),
        )),
        AnyOrList::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                if item.get_ref() == "*" {
                    return Err(src.error(
                        item.span(),
                        format!("{key}[{i}]"),
                        format!("\"*\" cannot be in a list, expected {key} = \"*\" for any"),
                    ));
                }
                check(item.get_ref())
                    .map_err(|msg| src.error(item.span(), format!("{key}[{i}]"), msg))
            })
            .collect::<Result<_, _>>()
            .map(Allowed::Only),
    }
}

/// An origin as a browser sends it in `Origin`: `http` or `https`, a host, an optional port,
/// nothing after. Scheme and host are case-insensitive, so it is kept lower-cased.
fn check_origin(origin: &str) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Allowed, Config, CorsConfig};

    fn cors(table: &str) -> Option<CorsConfig> {
        let text = format!("[server.cors]\n{table}");
        let config = Config::parse(&text, Path::new("e.toml")).expect("valid config");
        config.server.cors
    }

    fn error(table: &str) -> String {
        let text = format!("[server.cors]\n{table}");
        let err = Config::parse(&text, Path::new("e.toml")).expect_err("invalid config");
        err.to_string()
    }

    #[test]
    fn off_unless_configured() {
        let config = Config::parse("[server]\n", Path::new("e.toml")).unwrap();
        assert_eq!(config.server.cors, None);
    }

    #[test]
    fn any_origin_with_defaults() {
        assert_eq!(
            cors("origins = \"*\"\n"),
            Some(CorsConfig {
                origins: Allowed::Any,
                methods: ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
                    .map(String::from)
                    .to_vec(),
                headers: Allowed::Any,
                max_age: None,
                credentials: false,
            })
        );
    }

    #[test]
    fn listed_values_are_normalized() {
        let cors = cors(
            "origins = [\"HTTP://LocalHost:4200\", \"https://shop.example.com\", \"http://[::1]:8080\"]\n\
             methods = [\"get\", \"post\"]\nheaders = [\"Content-Type\"]\n\
             max_age_secs = 600\ncredentials = true\n",
        )
        .expect("cors");
        assert_eq!(
            cors.origins,
            Allowed::Only(
                [
                    "http://localhost:4200",
                    "https://shop.example.com",
                    "http://[::1]:8080"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        assert_eq!(cors.methods, ["GET", "POST"]);
        assert_eq!(cors.headers, Allowed::Only(vec!["content-type".into()]));
        assert_eq!(cors.max_age, Some(Duration::from_secs(600)));
        assert!(cors.credentials);
    }

    #[test]
    fn origins_are_required_and_never_empty() {
        assert_eq!(
            error("methods = [\"GET\"]\n"),
            "e.toml:1:1: server.cors.origins: required key is missing"
        );
        assert_eq!(
            error("origins = []\n"),
            "e.toml:2:11: server.cors.origins: is empty, expected at least one origin, \
             or \"*\" for any"
        );
    }

    #[test]
    fn origins_look_like_what_browsers_send() {
        for origin in [
            "http://localhost:4200/",
            "localhost:4200",
            "ftp://files",
            "http://shop:port",
            "http://",
        ] {
            assert_eq!(
                error(&format!("origins = [\"http://ok\", \"{origin}\"]\n")),
                format!(
                    "e.toml:2:25: server.cors.origins[1]: invalid origin {origin:?}, expected \
                     scheme://host[:port] such as \"http://localhost:4200\", with no path or \
                     trailing slash"
                )
            );
        }
        assert_eq!(
            error("origins = [\"*\"]\n"),
            "e.toml:2:12: server.cors.origins[0]: \"*\" cannot be in a list, expected \
             server.cors.origins = \"*\" for any"
        );
        assert_eq!(
            error("origins = \"http://localhost:4200\"\n"),
            "e.toml:2:11: server.cors.origins: expected \"*\" or a list, found \
             \"http://localhost:4200\"; write [\"http://localhost:4200\"] for just that"
        );
    }

    #[test]
    fn methods_headers_and_max_age_are_checked() {
        assert_eq!(
            error("origins = \"*\"\nmethods = [\"GET\", \"FETCH\"]\n"),
            "e.toml:3:19: server.cors.methods[1]: unknown method \"FETCH\", expected one of \
             GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS"
        );
        assert_eq!(
            error("origins = \"*\"\nheaders = [\"content type\"]\n"),
            "e.toml:3:12: server.cors.headers[0]: invalid header name \"content type\", \
             expected a name such as \"content-type\""
        );
        assert_eq!(
            error("origins = \"*\"\nmax_age_secs = 100000\n"),
            "e.toml:3:16: server.cors.max_age_secs: expected at most 86400 (a day; browsers \
             cap it there or lower), found 100000"
        );
        assert_eq!(
            error("origins = \"*\"\nheaders = 5\n"),
            "e.toml:3:11: server.cors.headers: invalid type: integer 5, expected \"*\" or an \
             array of strings"
        );
    }

    #[test]
    fn credentials_need_listed_origins() {
        assert_eq!(
            error("origins = \"*\"\ncredentials = true\n"),
            "e.toml:2:11: server.cors.origins: is \"*\" with credentials = true, expected a \
             list of origins: with credentials, any site could act for the signed-in user"
        );
    }
}
