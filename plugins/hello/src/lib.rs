//! The smallest useful plugin (world `http-plugin`): `GET /hello/{name}` answers
//! `{"message": "hello, <name>", "greetings": <count>}`, counting greetings in plugin state.

#[allow(unsafe_code)] // the generated glue is unsafe by nature
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "http-plugin" });

    // Exported names contain `:`, which a native build (the unit tests) cannot link.
    #[cfg(target_arch = "wasm32")]
    use super::Hello;
    #[cfg(target_arch = "wasm32")]
    export!(Hello);
}

use bindings::eventhost::plugin::state;
use bindings::eventhost::plugin::types::{Failure, HttpRequest, HttpResponse};
use bindings::exports::eventhost::plugin::http_handler::Guest;

struct Hello;

impl Guest for Hello {
    fn handle(request: HttpRequest) -> Result<HttpResponse, Failure> {
        let name = request
            .params
            .iter()
            .find(|(k, _)| k == "name")
            .map_or("world", |(_, v)| v);

        // A plain read-modify-write: if another request bumps the count first, the host runs
        // this one again on the new value, so no greeting goes uncounted.
        let count = state::get("greetings")
            .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        state::set("greetings", count.to_string().as_bytes()).map_err(Failure::Retry)?;

        let body = serde_json::json!({ "message": format!("hello, {name}"), "greetings": count });
        Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }
}
