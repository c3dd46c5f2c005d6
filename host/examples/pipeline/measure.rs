//! The measurements, the same for both sides: events/s over a backlog, and each order's time
//! from its produce call to its result being seen on the results topic.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Worker;
use crate::broker::{OrderProducer, Watcher};
use crate::orders;

/// How long a worker may take to start and deliver its first result (host start-up, plugin
/// compilation on a cold cache, consumer group join).
const FIRST_RESULT_WITHIN: Duration = Duration::from_secs(120);
/// How long a lone order's result may take before it counts as missing.
const LONE_ORDER_WITHIN: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub events_per_s: f64,
    /// Distinct results seen, of `orders` produced.
    pub results: usize,
    pub orders: usize,
    /// From the first result seen to the last.
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Orders per second offered (open loop), or `None` for lone orders.
    pub offered_per_s: Option<f64>,
    pub sent: usize,
    pub received: usize,
    /// `None` when fewer results than the percentile needs arrived in time.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// How long results were waited for after the last order was sent.
    pub waited_s: f64,
}

/// Events/s draining a backlog of `orders` orders (or as many as are done `window` after the
/// first result), from the creation of the first result, stamped by the worker's Kafka client,
/// to the moment the last one is seen: start-up and group join are not counted, the
/// acknowledgement and commit of the last results are.
pub fn throughput(
    watcher: &Watcher,
    worker: &mut Worker,
    orders: usize,
    window: Duration,
) -> anyhow::Result<Throughput> {
    wait_for_results(watcher, worker, 1, Instant::now() + FIRST_RESULT_WITHIN)?;
    let Some((first, _)) = watcher.first_and_last() else {
        anyhow::bail!("no result within {FIRST_RESULT_WITHIN:?}");
    };
    let results = wait_for_results(watcher, worker, orders, first + window)?;
    let seconds = watcher.busy_span().unwrap_or_default().as_secs_f64();
    Ok(Throughput {
        events_per_s: if seconds > 0.0 {
            results as f64 / seconds
        } else {
            0.0
        },
        results,
        orders,
        seconds,
    })
}

/// A worker caught up with its input, probed with orders whose results the watcher sees.
pub struct Probe<'a> {
    pub producer: &'a OrderProducer,
    pub topic: &'a str,
    /// Prefix of the probe's order ids.
    pub run: &'a str,
    pub watcher: &'a Watcher,
    pub worker: &'a mut Worker,
}

impl Probe<'_> {
    /// Sends one order and waits for its result, so the worker has joined its group and has
    /// its plugin ready before latencies are taken.
    pub fn warm_up(&mut self) -> anyhow::Result<()> {
        let (id, order) = orders::order(&format!("{}-warm-up", self.run), 0);
        self.producer.send(self.topic, &id, &order)?;
        let deadline = Instant::now() + FIRST_RESULT_WITHIN;
        if wait_for_results(self.watcher, self.worker, 1, deadline)? == 0 {
            anyhow::bail!("no result for the warm-up order within {FIRST_RESULT_WITHIN:?}");
        }
        Ok(())
    }

    /// `count` orders one at a time, each sent once the previous result was seen: the latency
    /// of an order that has the pipeline to itself.
    pub fn lone_orders(&mut self, count: usize) -> anyhow::Result<Latency> {
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(count);
        for n in 0..count {
            let (id, order) = orders::order(&format!("{}-lone", self.run), n);
            let sent = Instant::now();
            self.producer.send(self.topic, &id, &order)?;
            let deadline = sent + LONE_ORDER_WITHIN;
            while self.watcher.arrival(&id).is_none() && Instant::now() < deadline {
                self.worker.check()?;
                std::thread::sleep(Duration::from_micros(200));
            }
            latencies.push(self.watcher.arrival(&id).map(|seen| seen - sent));
        }
        Ok(summarize(latencies, None, started.elapsed()))
    }

    /// Orders at `rate` per second for `duration`, each sent on schedule whatever happened to
    /// the earlier ones (an open loop, so a slow pipeline cannot slow the offered load down),
    /// then up to `drain` for their results.
    pub fn open_loop(
        &mut self,
        rate: f64,
        duration: Duration,
        drain: Duration,
    ) -> anyhow::Result<Latency> {
        let total = (rate * duration.as_secs_f64()).round().max(1.0) as usize;
        let seen_before = self.watcher.distinct();
        let mut sent = Vec::with_capacity(total);
        let mut deliveries = Vec::with_capacity(total);
        let start = Instant::now();
        for n in 0..total {
            let due = start + Duration::from_secs_f64(n as f64 / rate);
            if let Some(early) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(early);
            }
            let (id, order) = orders::order(&format!("{}-load", self.run), n);
            sent.push((Instant::now(), id.clone()));
            deliveries.push(self.producer.send(self.topic, &id, &order)?);
        }
        let last_sent = Instant::now();
        let all = seen_before + total;
        wait_for_results(self.watcher, self.worker, all, last_sent + drain)?;
        let waited = last_sent.elapsed();
        for delivery in futures::executor::block_on(futures::future::join_all(deliveries)) {
            if let Err((e, _)) = delivery? {
                anyhow::bail!("an order was not delivered: {e}");
            }
        }
        let latencies = sent
            .iter()
            .map(|(at, id)| self.watcher.arrival(id).map(|seen| seen - *at))
            .collect();
        Ok(summarize(latencies, Some(rate), waited))
    }
}

/// Waits until `count` distinct results were seen or `deadline` passes, checking that the
/// worker still runs; returns how many were seen.
fn wait_for_results(
    watcher: &Watcher,
    worker: &mut Worker,
    count: usize,
    deadline: Instant,
) -> anyhow::Result<usize> {
    loop {
        let step = (Instant::now() + Duration::from_millis(100)).min(deadline);
        let seen = watcher.wait_for(count, step)?;
        if seen >= count || Instant::now() >= deadline {
            return Ok(seen);
        }
        worker.check()?;
    }
}

/// Percentiles over every order sent; one whose result never came counts as slower than all.
fn summarize(latencies: Vec<Option<Duration>>, rate: Option<f64>, waited: Duration) -> Latency {
    let mut sorted: Vec<Duration> = latencies.iter().flatten().copied().collect();
    sorted.sort();
    let sent = latencies.len();
    let percentile = |q: f64| {
        let rank = ((q * sent as f64).ceil() as usize).clamp(1, sent.max(1));
        sorted
            .get(rank - 1)
            .map(|latency| latency.as_secs_f64() * 1000.0)
    };
    Latency {
        offered_per_s: rate,
        sent,
        received: sorted.len(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        waited_s: waited.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_results_count_as_slowest() {
        let ms = |n| Some(Duration::from_millis(n));
        let all = summarize(vec![ms(3), ms(1), ms(2), ms(4)], None, Duration::ZERO);
        assert_eq!((all.p50_ms, all.p99_ms), (Some(2.0), Some(4.0)));
        let some_missing = summarize(vec![ms(1), None, ms(2), None], None, Duration::ZERO);
        assert_eq!(some_missing.p50_ms, Some(2.0));
        assert_eq!(some_missing.p99_ms, None);
        assert_eq!(some_missing.received, 2);
    }
}
