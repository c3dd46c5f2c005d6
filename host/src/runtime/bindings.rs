//! Host bindings generated from the WIT contract in `wit/`. Private to the runtime: the rest of
//! the host sees only the types re-exported from `runtime`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: trappable },
    // Handlers run as futures: a guest waiting in WASI holds no thread, and dropping the
    // future (deadline, client gone, shutdown) frees its instance at once.
    exports: { default: async },
});

pub use self::eventhost::plugin::types::{Delivery, Failure, HttpRequest, HttpResponse, Message};
pub use self::exports::eventhost::plugin::{http_handler, message_handler};
