//! What an HTTP handler may answer. Checked before any of the input's effects are applied,
//! so a response the host refuses changes nothing.

use http::{HeaderName, HeaderValue};

use super::budget::{self, Budget, BudgetKind};
use super::{HttpResponse, InvokeError};

/// Headers that frame the connection or the message. The host's HTTP server sets them; a
/// plugin that could would be able to desynchronize a keep-alive connection.
const HOST_OWNED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Checks `response` against the contract: a status from 200 to 599, valid header names and
/// values, no header the host owns, and a size within the plugin's response budget.
pub(super) fn check(response: &HttpResponse, budget: &Budget) -> Result<(), InvokeError> {
    let invalid = |why: String| Err(InvokeError::InvalidResponse(why));
    if !(200..=599).contains(&response.status) {
        return invalid(format!("status {} is not from 200 to 599", response.status));
    }
    let mut size = response.body.len();
    for (name, value) in &response.headers {
        size += name.len() + value.len();
        let Ok(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
            return invalid(format!("header name {name:?} is not valid"));
        };
        if HOST_OWNED_HEADERS.contains(&parsed.as_str()) {
            return invalid(format!("header {name:?} is set by the host"));
        }
        if HeaderValue::from_str(value).is_err() {
            return invalid(format!("header {name:?} has an invalid value"));
        }
    }
    budget::check(BudgetKind::ResponseBytes, size, budget.response_bytes)
        .map_err(InvokeError::Budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: (headers.iter())
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: b"{}".to_vec(),
        }
    }

    fn why(response: &HttpResponse) -> String {
        check(response, &Budget::default()).unwrap_err().to_string()
    }

    #[test]
    fn accepts_ordinary_responses() {
        let ok = response(201, &[("content-type", "application/json"), ("X-Id", "7")]);
        assert_eq!(check(&ok, &Budget::default()), Ok(()));
    }

    #[test]
    fn refuses_framing_headers_in_any_case() {
        for name in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "upgrade",
        ] {
            let text = why(&response(200, &[(name, "1")]));
            assert!(text.contains("is set by the host"), "{name}: {text}");
        }
    }

    #[test]
    fn refuses_bad_statuses_names_and_values() {
        assert!(why(&response(101, &[])).contains("status 101"));
        assert!(why(&response(600, &[])).contains("status 600"));
        assert!(why(&response(200, &[("bad name", "x")])).contains("header name"));
        assert!(why(&response(200, &[("x-a", "line\r\nx-b: forged")])).contains("invalid value"));
    }

    #[test]
    fn refuses_responses_over_budget() {
        let mut big = response(200, &[]);
        big.body = vec![b'a'; 3 << 10];
        let budget = Budget {
            response_bytes: 2 << 10,
            ..Budget::default()
        };
        let err = check(&big, &budget).unwrap_err();
        assert!(matches!(err, InvokeError::Budget(_)), "{err}");
    }
}
