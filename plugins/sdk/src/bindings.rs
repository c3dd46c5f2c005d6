//! The contract's bindings, generated once for every Rust plugin.
//!
//! The two worlds with one export each are generated; a plugin of world `plugin` exports both
//! (the component's world is the union of what its exports declare). The export macros are
//! public so that [`export_plugin!`](crate::export_plugin) and friends can expand them in the
//! plugin's crate; wit-bindgen then records each world's exports only where its macro is used.

#![allow(unsafe_code)] // the generated glue is unsafe by nature

pub mod http {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "http-plugin",
        pub_export_macro: true,
        additional_derives: [PartialEq, Eq],
        additional_type_attributes: {
            "eventhost:plugin/types@0.1.0/message": [#[derive(Default)]],
            "eventhost:plugin/types@0.1.0/delivery": [#[derive(Default)]],
            "eventhost:plugin/types@0.1.0/http-request": [#[derive(Default)]],
        },
    });
}

pub mod message {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "message-plugin",
        pub_export_macro: true,
        // The imports and types are the ones generated for `http` above.
        with: {
            "eventhost:plugin/types@0.1.0": crate::bindings::http::eventhost::plugin::types,
            "eventhost:plugin/outbox@0.1.0": crate::bindings::http::eventhost::plugin::outbox,
            "eventhost:plugin/state@0.1.0": crate::bindings::http::eventhost::plugin::state,
            "eventhost:plugin/config@0.1.0": crate::bindings::http::eventhost::plugin::config,
            "eventhost:plugin/log@0.1.0": crate::bindings::http::eventhost::plugin::log,
        },
    });
}

pub use http::eventhost::plugin::{config, log, outbox, state, types};
