//! Admission: which inputs may run now, so overload is shed rather than queued.
//!
//! Three gates, taken in this order and held until the input's instance is gone:
//! - the plugin's own cap (`limits.concurrency`), so one busy plugin cannot take every slot;
//! - a share per kind of input: HTTP requests and consumed records may each hold at most
//!   three quarters of the slots, so neither can starve the other;
//! - the pool: instances alive at once (`runtime.max_concurrency`).
//!
//! Consumed records wait at each gate (the bus holds the rest back). HTTP requests wait only
//! while few others wait and only up to the plugin's time limit; past that they are refused
//! with [`Overloaded`], which the HTTP layer answers with 503 and `Retry-After`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runtime::PluginInfo;

/// What kind of input asks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Http,
    Message,
}

/// An HTTP request found its plugin at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("plugin is at its concurrency limit of {limit}; try again shortly")]
pub struct Overloaded {
    /// The plugin's `limits.concurrency`.
    pub limit: usize,
}

/// Why an input was not admitted.
pub(super) enum Refusal {
    Overloaded(Overloaded),
    ShuttingDown,
}

impl Refusal {
    /// `plugin` has no room for another input in time.
    pub(super) fn overloaded(plugin: &PluginInfo) -> Self {
        Refusal::Overloaded(Overloaded {
            limit: plugin.concurrency,
        })
    }
}

/// The permits of one admitted input; dropping it lets the next one in.
pub(super) struct Admitted {
    _plugin: OwnedSemaphorePermit,
    _kind: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

struct PluginGate {
    limit: usize,
    slots: Arc<Semaphore>,
    /// HTTP requests waiting for a slot of this plugin.
    waiting: AtomicUsize,
}

/// See the module docs.
pub(super) struct Admission {
    max_instances: usize,
    pool: Arc<Semaphore>,
    http: Arc<Semaphore>,
    messages: Arc<Semaphore>,
    plugins: Mutex<HashMap<String, Arc<PluginGate>>>,
}

impl Admission {
    pub(super) fn new(max_instances: usize) -> Self {
        let share = (max_instances * 3 / 4).max(1);
        Admission {
            max_instances,
            pool: Arc::new(Semaphore::new(max_instances)),
            http: Arc::new(Semaphore::new(share)),
            messages: Arc::new(Semaphore::new(share)),
            plugins: Mutex::default(),
        }
    }

    /// Waits for the gates an input of `kind` on `plugin` must pass (see the module docs).
    pub(super) async fn admit(&self, plugin: &PluginInfo, kind: Kind) -> Result<Admitted, Refusal> {
        let gate = self.gate(plugin);
        let (share, bounded) = match kind {
            Kind::Http => (&self.http, true),
            Kind::Message => (&self.messages, false),
        };
        let overloaded = || Refusal::Overloaded(Overloaded { limit: gate.limit });
        let wait = async {
            let plugin = gate.slots.clone().acquire_owned().await;
            let kind = share.clone().acquire_owned().await;
            let pool = self.pool.clone().acquire_owned().await;
            match (plugin, kind, pool) {
                (Ok(plugin), Ok(kind), Ok(pool)) => Ok(Admitted {
                    _plugin: plugin,
                    _kind: kind,
                    _pool: pool,
                }),
                _ => Err(Refusal::ShuttingDown),
            }
        };
        if !bounded {
            return wait.await;
        }
        // At most as many requests wait as may run; they wait no longer than they may run.
        if gate.waiting.fetch_add(1, Ordering::AcqRel) >= gate.limit {
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded());
        }
        let admitted = tokio::time::timeout(plugin.timeout, wait).await;
        gate.waiting.fetch_sub(1, Ordering::AcqRel);
        admitted.unwrap_or_else(|_| Err(overloaded()))
    }

    /// Inputs admitted and running now (each on an instance of its own).
    pub(super) fn in_use(&self) -> usize {
        self.max_instances
            .saturating_sub(self.pool.available_permits())
    }

    /// Stops admitting: every waiting and later input is refused.
    pub(super) fn close(&self) {
        self.pool.close();
        self.http.close();
        self.messages.close();
        for gate in self
            .plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            gate.slots.close();
        }
    }

    fn gate(&self, plugin: &PluginInfo) -> Arc<PluginGate> {
        let mut plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        match plugins.get(&plugin.name) {
            Some(gate) if gate.limit == plugin.concurrency => gate.clone(),
            // New, or its limit changed: a new gate (inputs on the old one finish under it).
            _ => {
                let gate = Arc::new(PluginGate {
                    limit: plugin.concurrency,
                    slots: Arc::new(Semaphore::new(plugin.concurrency)),
                    waiting: AtomicUsize::new(0),
                });
                plugins.insert(plugin.name.clone(), gate.clone());
                gate
            }
        }
    }
}

/// How long an overloaded client is told to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(concurrency: usize, timeout_ms: u64) -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "v".into(),
            source: "p.wasm".into(),
            publish: Default::default(),
            config: Default::default(),
            memory_bytes: 1 << 20,
            timeout: Duration::from_millis(timeout_ms),
            budget: Default::default(),
            concurrency,
            cloudevents: None,
            reuse: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http_waits_boundedly_then_is_refused() {
        let admission = Admission::new(16);
        let info = plugin(1, 100);
        let running = admission.admit(&info, Kind::Http).await.ok().unwrap();
        // One may wait; it gives up at the plugin's time limit.
        let waiting = admission.admit(&info, Kind::Http);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        // A second waiter finds the queue full and is refused at once.
        assert!(matches!(
            admission.admit(&info, Kind::Http).await,
            Err(Refusal::Overloaded(Overloaded { limit: 1 }))
        ));
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(matches!(waiting.await, Err(Refusal::Overloaded(_))));
        drop(running);
        assert!(admission.admit(&info, Kind::Http).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn http_cannot_take_the_slots_records_need() {
        let admission = Admission::new(4);
        let info = plugin(100, 1000);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(admission.admit(&info, Kind::Http).await.ok().unwrap());
        }
        // HTTP holds its share (3 of 4); more HTTP waits, a record still gets in.
        let more = admission.admit(&info, Kind::Http);
        tokio::pin!(more);
        assert!(futures::poll!(more.as_mut()).is_pending());
        assert!(admission.admit(&info, Kind::Message).await.is_ok());
    }

    #[tokio::test]
    async fn closing_refuses_waiters() {
        let admission = Admission::new(1);
        let info = plugin(4, 1000);
        let _running = admission.admit(&info, Kind::Message).await.ok().unwrap();
        admission.close();
        assert!(matches!(
            admission.admit(&info, Kind::Message).await,
            Err(Refusal::ShuttingDown)
        ));
    }
}
