//! Turns on the CPU for guests, shared fairly between plugins.
//!
//! A running guest yields at every epoch tick, but yielding alone is not fairness: when one
//! plugin has many busy inputs, the async runtime's queue fills with them and another plugin's
//! input waits behind all of them, as do the deadlines of every busy input. So a guest runs
//! only while it holds a turn. There are as many turns as worker threads; a guest takes one
//! each time it is polled and gives it back when the poll returns (at the next tick at the
//! latest, or when it waits on a host call). Waiting guests queue per plugin, and a freed turn
//! goes to the next plugin in round-robin order: a plugin's input waits for at most one tick
//! of each other plugin that wants the CPU, however many inputs those have.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The turns of one engine; guests queue under a key `K` that names their plugin.
pub struct Turns<K> {
    state: Mutex<State<K>>,
}

struct State<K> {
    free: usize,
    /// Plugins with waiting guests, in the order they get the next turns.
    queue: VecDeque<PluginQueue<K>>,
}

struct PluginQueue<K> {
    plugin: K,
    waiting: VecDeque<Arc<Ticket>>,
}

/// A guest's place in line; `granted` once a turn was handed to it.
struct Ticket {
    granted: Mutex<(bool, Option<Waker>)>,
}

impl<K: PartialEq + Clone> Turns<K> {
    /// `count` turns: the number of threads guests run on.
    pub fn new(count: usize) -> Self {
        Turns {
            state: Mutex::new(State {
                free: count.max(1),
                queue: VecDeque::new(),
            }),
        }
    }

    /// Runs `guest` only while it holds a turn, queued under `plugin`.
    pub fn run<F: Future>(self: &Arc<Self>, plugin: K, guest: F) -> Taking<K, F> {
        Taking {
            turns: self.clone(),
            plugin,
            waiting: None,
            guest,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a free turn at once, or queues `ticket` under `plugin`.
    fn take_or_queue(&self, plugin: &K, ticket: &Arc<Ticket>) -> bool {
        let mut state = self.lock();
        if state.free > 0 && state.queue.is_empty() {
            state.free -= 1;
            return true;
        }
        match state.queue.iter_mut().find(|q| q.plugin == *plugin) {
            Some(queue) => queue.waiting.push_back(ticket.clone()),
            None => state.queue.push_back(PluginQueue {
                plugin: plugin.clone(),
                waiting: VecDeque::from([ticket.clone()]),
            }),
        }
        false
    }

    /// Hands a turn to the first guest of the next plugin in line, or frees it.
    fn give_back(&self) {
        let mut state = self.lock();
        while let Some(mut queue) = state.queue.pop_front() {
            let Some(ticket) = queue.waiting.pop_front() else {
                continue;
            };
            if !queue.waiting.is_empty() {
                state.queue.push_back(queue);
            }
            let mut granted = ticket.granted.lock().unwrap_or_else(|e| e.into_inner());
            granted.0 = true;
            if let Some(waker) = granted.1.take() {
                waker.wake();
            }
            return;
        }
        state.free += 1;
    }

    /// Whether guests are waiting for a turn.
    pub fn contended(&self) -> bool {
        !self.lock().queue.is_empty()
    }

    /// Takes `ticket` out of line; true if a turn had already been handed to it.
    fn leave(&self, plugin: &K, ticket: &Arc<Ticket>) -> bool {
        let mut state = self.lock();
        if let Some(at) = state.queue.iter().position(|q| q.plugin == *plugin) {
            let queue = &mut state.queue[at];
            queue.waiting.retain(|t| !Arc::ptr_eq(t, ticket));
            if queue.waiting.is_empty() {
                state.queue.remove(at);
            }
        }
        drop(state);
        ticket.granted.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

pin_project_lite::pin_project! {
    /// A guest that runs only while it holds a turn; see [`Turns::run`].
    pub struct Taking<K, F> where K: PartialEq, K: Clone {
        turns: Arc<Turns<K>>,
        plugin: K,
        waiting: Option<Arc<Ticket>>,
        #[pin]
        guest: F,
    }

    impl<K, F> PinnedDrop for Taking<K, F> where K: PartialEq, K: Clone {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(ticket) = this.waiting.take()
                && this.turns.leave(this.plugin, &ticket)
            {
                this.turns.give_back();
            }
        }
    }
}

impl<K: PartialEq + Clone, F: Future> Future for Taking<K, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        match this.waiting {
            None => {
                let ticket = Arc::new(Ticket {
                    granted: Mutex::new((false, Some(cx.waker().clone()))),
                });
                if !this.turns.take_or_queue(this.plugin, &ticket) {
                    *this.waiting = Some(ticket);
                    return Poll::Pending;
                }
            }
            Some(ticket) => {
                let mut granted = ticket.granted.lock().unwrap_or_else(|e| e.into_inner());
                if !granted.0 {
                    granted.1 = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                drop(granted);
                *this.waiting = None;
            }
        }
        // Holding a turn: run until the guest yields, then pass the turn on.
        let polled = this.guest.poll(cx);
        this.turns.give_back();
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A guest that stays busy for `slices` polls, yielding after each, and counts how many
    /// guests run at the same time.
    async fn busy(slices: usize, running: Arc<AtomicUsize>, most: Arc<AtomicUsize>) {
        for _ in 0..slices {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            running.fetch_sub(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_guests_run_at_once_than_there_are_turns() {
        let turns = Arc::new(Turns::<&str>::new(2));
        let (running, most) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
        let guests: Vec<_> = (0..16)
            .map(|_| {
                let guest = busy(5, Arc::clone(&running), most.clone());
                tokio::spawn(turns.run("busy", guest))
            })
            .collect();
        for guest in guests {
            guest.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(turns.lock().free, 2, "every turn came back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_plugin_waits_for_one_slice_not_for_every_busy_guest() {
        let turns = Arc::new(Turns::<&str>::new(1));
        let (running, most) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
        let hogs: Vec<_> = (0..20)
            .map(|_| {
                let guest = busy(50, Arc::clone(&running), most.clone());
                tokio::spawn(turns.run("hog", guest))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // 20 hogs × 50 slices of 1 ms queue up 1 s of work; the other plugin's guest needs one
        // slice and gets the next turn after the running one.
        let started = std::time::Instant::now();
        turns.run("quick", async {}).await;
        let waited = started.elapsed();
        assert!(waited < Duration::from_millis(200), "waited {waited:?}");
        for hog in hogs {
            hog.abort();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contended_while_guests_wait_for_a_turn() {
        let turns = Arc::new(Turns::<&str>::new(1));
        assert!(!turns.contended());
        let (running, most) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
        let guests: Vec<_> = (0..4)
            .map(|_| {
                let guest = busy(20, Arc::clone(&running), most.clone());
                tokio::spawn(turns.run("busy", guest))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(turns.contended(), "four busy guests share one turn");
        for guest in guests {
            guest.await.unwrap();
        }
        assert!(!turns.contended());
    }

    /// Guests that run, wait, and are cancelled at any point, from many plugins: every turn
    /// comes back and nobody is left waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn turns_survive_guests_cancelled_anywhere() {
        let turns = Arc::new(Turns::<usize>::new(2));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let guests: Vec<_> = (0..300usize)
            .map(|i| {
                let (running, most) = (running.clone(), most.clone());
                let guest = async move {
                    for step in 0..(i % 7) {
                        busy(1, running.clone(), most.clone()).await;
                        if step % 2 == 0 {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                    }
                };
                let task = tokio::spawn(turns.run(i % 5, guest));
                (i, task)
            })
            .collect();
        for (i, task) in guests {
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_micros(100)).await;
                task.abort();
            }
            let _ = task.await;
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        let state = turns.lock();
        assert_eq!(state.free, 2, "every turn came back");
        assert!(state.queue.is_empty(), "nobody left waiting");
    }

    #[test]
    fn a_guest_dropped_while_waiting_or_granted_gives_its_turn_back() {
        let turns = Arc::new(Turns::<&str>::new(1));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // Someone holds the only turn; two guests of other plugins queue.
        let holder = Arc::new(Ticket {
            granted: Mutex::new((false, None)),
        });
        assert!(turns.take_or_queue(&"a", &holder));
        let mut first = Box::pin(turns.run("b", async {}));
        let mut second = Box::pin(turns.run("c", async {}));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        // The turn goes to `first`, which is dropped before it runs: it passes it on to
        // `second`, which, dropped too, frees it.
        turns.give_back();
        drop(first);
        drop(second);
        assert_eq!(turns.lock().free, 1);
        assert!(turns.lock().queue.is_empty());
        // And a guest dropped while waiting leaves the line without taking a turn.
        assert!(turns.take_or_queue(&"a", &holder));
        let mut waiting = Box::pin(turns.run("b", async {}));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        drop(waiting);
        assert!(turns.lock().queue.is_empty());
        assert_eq!(turns.lock().free, 0, "the holder still has it");
    }
}
