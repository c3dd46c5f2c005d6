//! Instances kept between inputs, for plugins that opted into reuse (`instance = "reuse"`).
//!
//! A fresh instance per input is the default and the strong isolation: nothing one input
//! leaves in guest memory is seen by the next. Reuse trades that for the cost of creating an
//! instance: an instance that returned normally (a result or a failure, not a trap or a time
//! limit) goes back to its plugin's pool and serves the next input, up to the plugin's
//! `reuse_inputs`. Each version of a plugin has its own pool, so a swap starts afresh.
//!
//! Idle instances hold slots of the pooling allocator. The engine is sized with
//! [`WARM_SLOTS`] slots beyond `max_concurrency`, and no more instances than that are kept
//! idle across all plugins, so kept instances never take a slot a running input needs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::Store;
use wasmtime::component::Instance;

use super::host_state::InputState;

/// Most instances kept idle at once, across all plugins.
pub const WARM_SLOTS: u32 = 32;

/// An instance ready for its next input, and how many it has served.
pub struct Warm {
    pub store: Store<InputState>,
    pub instance: Instance,
    pub served: u32,
}

/// How many instances are idle across all pools.
#[derive(Default)]
pub struct WarmSlots(AtomicU32);

/// One plugin version's idle instances.
pub struct WarmPool {
    idle: Mutex<Vec<Warm>>,
    slots: Arc<WarmSlots>,
}

impl WarmPool {
    /// An empty pool counting its idle instances in `slots`.
    pub fn new(slots: Arc<WarmSlots>) -> Self {
        WarmPool {
            idle: Mutex::default(),
            slots,
        }
    }

    /// An idle instance, if there is one.
    pub fn take(&self) -> Option<Warm> {
        let warm = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        self.slots.0.fetch_sub(1, Ordering::Relaxed);
        Some(warm)
    }

    /// Keeps `warm` for the next input, unless every slot for idle instances is taken (then
    /// it is dropped, and the next input gets a fresh one).
    pub fn keep(&self, warm: Warm) {
        let reserved = (self.slots.0)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < WARM_SLOTS).then_some(n + 1)
            })
            .is_ok();
        if reserved {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(warm);
        }
    }
}

impl Drop for WarmPool {
    /// The pool goes with its plugin version, and its instances give their slots back.
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner()).len();
        self.slots.0.fetch_sub(idle as u32, Ordering::Relaxed);
    }
}
