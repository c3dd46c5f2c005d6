//! The smallest useful plugin (world `http-plugin`): `GET /hello/{name}` answers
//! `{"message": "hello, <name>", "greetings": <count>}`, counting greetings in plugin state.

use sdk::{Failure, Host, HttpHandler, Request, Response};

pub struct Hello;

impl HttpHandler for Hello {
    fn on_request(host: &mut impl Host, request: Request) -> Result<Response, Failure> {
        let name = request.param("name").unwrap_or("world");

        // A plain read-modify-write: if another request bumps the count first, the host runs
        // this one again on the new value, so no greeting goes uncounted.
        let count = host
            .get("greetings")
            .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        host.set("greetings", count.to_string().as_bytes())
            .map_err(Failure::Retry)?;

        let body = serde_json::json!({ "message": format!("hello, {name}"), "greetings": count });
        Ok(Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }
}

sdk::export_http_plugin!(Hello);

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::fake::FakeHost;

    #[test]
    fn greets_and_counts() {
        let mut host = FakeHost::new();
        let mut request = Request::new("GET", "/hello/you");
        request.params = vec![("name".into(), "you".into())];
        for count in 1..=2 {
            let response = Hello::on_request(&mut host, request.clone()).expect("answers");
            assert_eq!(response.body_json()["message"], "hello, you");
            assert_eq!(response.body_json()["greetings"], count);
        }
    }
}
