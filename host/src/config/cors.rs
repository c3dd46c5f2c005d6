//! `[server.cors]` → [`CorsConfig`]: origins as browsers send them, known methods, header
//! names, and no credentials for any origin.

use std::time::Duration;

use serde_spanned::Spanned;

use super::error::ConfigError;
use super::model::{Allowed, CorsConfig};
use super::raw::{AnyOrList, RawCors};
use super::source::Source;

pub(super) fn cors(raw: &RawCors, src: &Source) -> Result<CorsConfig, ConfigError> {
    let origins = allowed(src, "origins", &raw.origins, |o| o.0.clone())?;
    if origins == Allowed::Only(Vec::new()) {
        let message = "origins is empty, expected at least one origin, or \"*\" for any";
        return Err(src.error(raw.origins.span(), message));
    }
    let methods = match &raw.methods {
        None => (CorsConfig::DEFAULT_METHODS.iter())
            .map(|m| m.to_string())
            .collect(),
        Some(list) if list.get_ref().is_empty() => {
            let message = "methods is empty, expected at least one method";
            return Err(src.error(list.span(), message));
        }
        Some(list) => list.get_ref().iter().map(|m| m.0.clone()).collect(),
    };
    let headers = match &raw.headers {
        Some(headers) => allowed(src, "headers", headers, |h| h.0.clone())?,
        None => Allowed::Any,
    };
    let max_age = match &raw.max_age_secs {
        Some(secs) if Duration::from_secs(*secs.get_ref()) > CorsConfig::MAX_AGE_LIMIT => {
            let message = format!(
                "expected at most {} (a day; browsers cap it there or lower), found {}",
                CorsConfig::MAX_AGE_LIMIT.as_secs(),
                secs.get_ref()
            );
            return Err(src.error(secs.span(), message));
        }
        secs => secs.as_ref().map(|s| Duration::from_secs(*s.get_ref())),
    };
    let credentials = raw.credentials.unwrap_or(false);
    if credentials && origins == Allowed::Any {
        return Err(src.error(
            raw.origins.span(),
            "origins is \"*\" with credentials = true, expected a list of origins: \
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

/// `"*"` → [`Allowed::Any`]; a list (its items checked as they were read) → the list.
fn allowed<T>(
    src: &Source,
    key: &str,
    value: &Spanned<AnyOrList<T>>,
    text: fn(&T) -> String,
) -> Result<Allowed, ConfigError> {
    match value.get_ref() {
        AnyOrList::One(any) if any == "*" => Ok(Allowed::Any),
        AnyOrList::One(other) => Err(src.error(
            value.span(),
            format!("{key} is \"*\" or a list, found {other:?}; write [{other:?}] for just that"),
        )),
        AnyOrList::List(items) => Ok(Allowed::Only(items.iter().map(text).collect())),
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
}
