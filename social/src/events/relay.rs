//! The outbox relay: durable events reach the bus only through it. The store writes each
//! event in the same atomic write as the change; the relay publishes them in order and
//! acknowledges them only after the bus has them, so a bus outage delays events and never
//! fails a send.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::bus::EventBus;
use crate::messaging::model::Event;
use crate::messaging::store::Store;

/// Relays `node`'s outbox to `bus` until `stop` fires: read a batch, publish, acknowledge.
/// Wakes on `wake` (after each write) and at least once a second (to retry after an outage).
pub async fn run_relay(
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    node: u16,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
) {
    let mut after = 0;
    let mut backoff = Duration::from_millis(50);
    // One warning per outage, one line when it ends.
    let mut outage = false;
    loop {
        let batch = match store.outbox_read(node, after, 512).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("outbox read: {e}");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.notified() => return,
            }
            continue;
        }
        let last = batch.last().map_or(after, |(seq, _)| *seq);
        let events: Vec<Event> = batch.into_iter().map(|(_, e)| e).collect();
        match bus.publish(&events).await {
            Ok(()) => {
                if std::mem::take(&mut outage) {
                    tracing::info!("event bus back: outbox draining");
                }
                backoff = Duration::from_millis(50);
                after = last;
                if let Err(e) = store.outbox_ack(node, last).await {
                    tracing::warn!("outbox ack: {e}");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut outage, true) {
                    tracing::warn!("event bus unavailable, events wait in the outbox: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.notified() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
