//! Connects a plugin's handlers to the component: the [`Host`] backed by the component's
//! imports, and the export macros.

use std::marker::PhantomData;

use crate::bindings::{config, http, log, message, outbox, state};
use crate::{Delivery, Failure, Host, HttpHandler, Level, Message, MessageHandler};
use crate::{Request, Response};

/// The real host, reached through the component's imports.
struct Imports;

impl Host for Imports {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        state::set(key, value)
    }
    fn delete(&mut self, key: &str) {
        state::delete(key)
    }
    fn scan(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        state::scan(prefix)
    }
    fn send(&mut self, msg: Message) -> Result<(), String> {
        outbox::send(&msg)
    }
    fn config(&self, key: &str) -> Option<String> {
        config::get(key)
    }
    fn log(&self, level: Level, msg: &str) {
        log::log(level, msg)
    }
}

/// The generated export traits, implemented for any plugin by handing it the [`Imports`].
#[doc(hidden)]
pub struct Exported<P>(PhantomData<P>);

impl<P: HttpHandler + 'static> http::exports::eventhost::plugin::http_handler::Guest
    for Exported<P>
{
    fn handle(request: Request) -> Result<Response, Failure> {
        P::on_request(&mut Imports, request)
    }
}

impl<P: MessageHandler + 'static> message::exports::eventhost::plugin::message_handler::Guest
    for Exported<P>
{
    fn handle(delivery: Delivery) -> Result<(), Failure> {
        P::on_message(&mut Imports, delivery)
    }
}

/// Exports a type implementing [`HttpHandler`] and [`MessageHandler`] as the component's
/// handlers (world `plugin`): `sdk::export_plugin!(Payment);`
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_http_plugin!($plugin);
        $crate::export_message_plugin!($plugin);
    };
}

/// Exports a type implementing [`HttpHandler`] as the component's handler (world
/// `http-plugin`): `sdk::export_http_plugin!(Catalog);`
#[macro_export]
macro_rules! export_http_plugin {
    ($plugin:ty) => {
        // Exported names contain `:`, which a native build (the unit tests) cannot link.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            type Exported = $crate::__private::Exported<$plugin>;
            use $crate::__private::http as bindings;
    bindings::export!(Exported with_types_in bindings);
        };
    };
}

/// Exports a type implementing [`MessageHandler`] as the component's handler (world
/// `message-plugin`): `sdk::export_message_plugin!(Audit);`
#[macro_export]
macro_rules! export_message_plugin {
    ($plugin:ty) => {
        // Exported names contain `:`, which a native build (the unit tests) cannot link.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            type Exported = $crate::__private::Exported<$plugin>;
            use $crate::__private::message as bindings;
    bindings::export!(Exported with_types_in bindings);
        };
    };
}
