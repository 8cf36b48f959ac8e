//! The Kafka event bus: [`KafkaBus`], an [`EventBus`] over one Kafka topic (rdkafka).
//!
//! Every instance of the social plane publishes to the same topic and reads all of it, so a
//! user connected to instance 1 sees what happens on instance 2.
//!
//! # Records
//!
//! One [`BusMessage`] per record, as JSON (`{"kind": "event", "event": {"type":
//! "message.created", "v": 1, ...}}`; events carry their schema version `v`). The key decides
//! the partition, and Kafka keeps one partition in order:
//!
//! | message | key |
//! | --- | --- |
//! | durable [`Event`] of a conversation | [`ConversationId::to_bytes`] of the conversation |
//! | durable [`Event`] of the follow graph | `user:` + the followee's 16 bytes |
//! | typing | the same, for `between(from, to)` |
//! | live chat | `room:` + the room name |
//!
//! The producer partitions with `murmur2_random`, as Java clients do.
//!
//! # Delivery guarantees
//!
//! - **At least once, from the outbox.** Durable events reach the bus only through the outbox
//!   relay ([`crate::events::relay::run_relay`]). [`EventBus::publish`] returns `Ok` only once every event
//!   of the batch is acknowledged by all in-sync replicas (`acks=all`, idempotent producer);
//!   otherwise `Err`, the outbox keeps the batch and the relay sends all of it again. Events of
//!   a batch that got through the first time are then on the topic **twice**: consumers must be
//!   idempotent (a message id, or `edited_at`, says which version is newer).
//! - **Ordered per conversation, and per followee.** The idempotent producer never reorders
//!   or duplicates its own retries within a partition, and one conversation (or one account's
//!   follows and unfollows) is one key, so one partition. A batch
//!   resent after a failure repeats, in order, events some of which may already be on the
//!   topic: the last copy of each event is in order, an earlier copy may precede it.
//! - **Each instance reads everything published after [`KafkaBus::connect`] returned.** The
//!   consumer is *assigned* every partition of the topic at its end offset (fetched in
//!   `connect`), rather than joining a consumer group: no rebalance delay, no race between
//!   "subscribed" and "positioned", and no committed offsets left behind. Its group id only
//!   names it. Partitions added later are picked up within 30 s, from their beginning.
//!   Nothing is replayed across a restart: clients recover what they missed with `since`.
//! - **Ephemeral messages are best effort**: a separate producer whose records expire after
//!   [`KafkaOptions::ephemeral_timeout`] (1 s), so a typing notice or a chat line is delivered
//!   promptly or dropped, not held for a late delivery after an error was reported.
//!
//! # Outages
//!
//! While no broker can be reached, `publish` fails after [`KafkaOptions::delivery_timeout`]
//! (10 s by default) and the events wait in the outbox; sends still succeed (they are
//! durable in the store). `publish_ephemeral` fails within its short timeout. The consumer
//! reconnects by itself and resumes where it was, so nothing published before or after the
//! outage is lost to it. One `warn` line marks the start of an outage episode and one `info`
//! line its end (the first successful delivery or record), however many messages fail in
//! between; librdkafka's own logs go to `debug`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::Client;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::bus::{BusError, BusMessage, EventBus};
use crate::messaging::model::{ConversationId, Event};

/// How to reach the topic, and the few knobs worth turning.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic every instance shares.
    pub topic: String,
    /// This instance's consumer group id; unique per instance (`zerocast-{node}-{uuid}`).
    pub group: String,
    /// Partitions when this instance creates the topic.
    pub partitions: i32,
    /// Replication factor when this instance creates the topic; `-1` is the broker default.
    pub replication: i32,
    /// How long a durable event may take to be acknowledged (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// How long an ephemeral message may take before it is dropped.
    pub ephemeral_timeout: Duration,
    /// How long `connect` waits for the topic's metadata and end offsets.
    pub connect_timeout: Duration,
    /// Messages the slowest [`EventBus::subscribe`]r may lag before it loses some.
    pub capacity: usize,
    /// Extra librdkafka properties for every client (`security.protocol`, `sasl.*`, ...).
    pub properties: Vec<(String, String)>,
}

impl KafkaOptions {
    /// Defaults for everything but where the topic is.
    pub fn new(brokers: &str, topic: &str, group: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            partitions: 12,
            replication: -1,
            delivery_timeout: Duration::from_secs(10),
            ephemeral_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(30),
            capacity: 16 * 1024,
            properties: Vec::new(),
        }
    }

    /// Adds a librdkafka property to every client.
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_owned(), value.to_owned()));
        self
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.group)
            .set("log.connection.close", "false")
            // Reconnect within a second once brokers are back (librdkafka's default backs
            // off up to 10 s, which is what an outage of more than a few seconds gets).
            .set("reconnect.backoff.max.ms", "1000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    fn producer_config(&self, timeout: Duration, durable: bool) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", millis(timeout));
        if !durable {
            c.set("client.id", format!("{}-ephemeral", self.group));
        }
        c
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

/// Outage episodes: one `warn` when the bus becomes unreachable, one `info` when it is back.
#[derive(Debug)]
struct Health {
    topic: String,
    down: AtomicBool,
    since: Mutex<Option<Instant>>,
    episodes: AtomicU64,
}

impl Health {
    fn fail(&self, reason: &dyn std::fmt::Display) {
        if !self.down.swap(true, Ordering::SeqCst) {
            self.episodes.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut s) = self.since.lock() {
                *s = Some(Instant::now());
            }
            tracing::warn!(
                topic = %self.topic,
                "kafka event bus unavailable ({reason}); durable events wait in the outbox, \
                 live events are dropped until it recovers"
            );
        }
    }

    fn ok(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            let after = self
                .since
                .lock()
                .ok()
                .and_then(|mut s| s.take())
                .map(|t| t.elapsed())
                .unwrap_or_default();
            tracing::info!(topic = %self.topic, "kafka event bus available again after {after:.1?}");
        }
    }
}

/// The context of every client: librdkafka's logs and errors to `debug`.
#[derive(Debug, Clone)]
struct Ctx {
    health: Arc<Health>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical
        ) {
            tracing::warn!(target: "librdkafka", "{fac}: {message}");
        } else {
            tracing::debug!(target: "librdkafka", "{fac}: {message}");
        }
    }

    /// Producers' errors (connection failures, repeated per attempt): `debug` only. Health
    /// follows what matters: deliveries, and the consumer's records and errors.
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ConsumerContext for Ctx {}

/// An [`EventBus`] over a Kafka topic. See the [module docs](self) for its guarantees.
pub struct KafkaBus {
    opts: KafkaOptions,
    ctx: Ctx,
    /// Durable events; replaced after a fatal (idempotence) error.
    durable: RwLock<FutureProducer<Ctx>>,
    ephemeral: FutureProducer<Ctx>,
    tx: broadcast::Sender<BusMessage>,
    consumer: JoinHandle<()>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.opts.brokers)
            .field("topic", &self.opts.topic)
            .field("group", &self.opts.group)
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}

fn bus_err(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError(format!("kafka: {what}: {e}"))
}

impl KafkaBus {
    /// Connects with default [`KafkaOptions`]. `group` must be unique per instance.
    pub async fn connect(brokers: &str, topic: &str, group: &str) -> Result<Self, BusError> {
        Self::connect_with(KafkaOptions::new(brokers, topic, group)).await
    }

    /// Creates the topic if absent (tolerating "already exists", and brokers without the
    /// admin API), waits for its metadata, positions a consumer at the end of every partition
    /// and starts the task that feeds [`EventBus::subscribe`]. Needs a tokio runtime.
    pub async fn connect_with(opts: KafkaOptions) -> Result<Self, BusError> {
        let health = Arc::new(Health {
            topic: opts.topic.clone(),
            down: AtomicBool::new(false),
            since: Mutex::new(None),
            episodes: AtomicU64::new(0),
        });
        let ctx = Ctx { health };

        let mut cc = opts.client_config();
        cc.set("group.id", &opts.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set("enable.partition.eof", "false");
        // A consumer never auto-creates topics (`allow.auto.create.topics=false`), so its
        // metadata tells whether the topic exists.
        let consumer: Arc<StreamConsumer<Ctx>> = Arc::new(
            cc.create_with_context(ctx.clone())
                .map_err(|e| bus_err("consumer", e))?,
        );
        let deadline = Instant::now() + opts.connect_timeout;
        let (c, topic) = (consumer.clone(), opts.topic.clone());
        let exists = tokio::task::spawn_blocking(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            partitions_of(c.client(), &topic, wait.min(Duration::from_secs(5))).is_ok()
        })
        .await
        .unwrap_or(false);
        if !exists {
            create_topic(&opts, &ctx, deadline).await;
        }

        let durable: FutureProducer<Ctx> = opts
            .producer_config(opts.delivery_timeout, true)
            .create_with_context(ctx.clone())
            .map_err(|e| bus_err("producer", e))?;
        let ephemeral: FutureProducer<Ctx> = opts
            .producer_config(opts.ephemeral_timeout, false)
            .create_with_context(ctx.clone())
            .map_err(|e| bus_err("producer", e))?;

        // Partitions (asked by a producer: brokers may auto-create the topic for it) and
        // their end offsets. Blocking librdkafka calls, off the runtime.
        let (c, p, topic) = (consumer.clone(), durable.clone(), opts.topic.clone());
        let assignment = tokio::task::spawn_blocking(move || -> Result<_, BusError> {
            let partitions = wait_for_partitions(p.client(), &topic, deadline)?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                let left = deadline.saturating_duration_since(Instant::now());
                let (_, high) = c
                    .fetch_watermarks(&topic, p, left.max(Duration::from_millis(1)))
                    .map_err(|e| bus_err(&format!("end offset of {topic}/{p}"), e))?;
                tpl.add_partition_offset(&topic, p, Offset::Offset(high))
                    .map_err(|e| bus_err("assignment", e))?;
            }
            c.assign(&tpl).map_err(|e| bus_err("assign", e))?;
            Ok(partitions)
        })
        .await
        .map_err(|e| bus_err("connect task", e))??;

        let (tx, _) = broadcast::channel(opts.capacity.max(1));
        let task = tokio::spawn(consume(
            consumer,
            opts.topic.clone(),
            assignment,
            tx.clone(),
            ctx.health.clone(),
        ));
        tracing::info!(
            brokers = %opts.brokers,
            topic = %opts.topic,
            group = %opts.group,
            partitions = assignment,
            "kafka event bus connected"
        );
        Ok(Self {
            opts,
            ctx,
            durable: RwLock::new(durable),
            ephemeral,
            tx,
            consumer: task,
        })
    }

    /// Whether the last attempt to reach the brokers succeeded.
    pub fn is_available(&self) -> bool {
        !self.ctx.health.down.load(Ordering::SeqCst)
    }

    /// Outage episodes since `connect` (each logged once).
    pub fn outages(&self) -> u64 {
        self.ctx.health.episodes.load(Ordering::Relaxed)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.opts.topic
    }

    fn producer(&self) -> FutureProducer<Ctx> {
        match self.durable.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// After a failure: an idempotent producer in a fatal state never recovers; replace it.
    fn renew_if_fatal(&self, producer: &FutureProducer<Ctx>) {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return;
        };
        tracing::warn!(topic = %self.opts.topic, "kafka producer fatal error ({code:?}: {reason}); replacing it");
        match self
            .opts
            .producer_config(self.opts.delivery_timeout, true)
            .create_with_context(self.ctx.clone())
        {
            Ok(p) => {
                if let Ok(mut w) = self.durable.write() {
                    *w = p;
                }
            }
            Err(e) => tracing::warn!("kafka producer: {e}"),
        }
    }

    fn enqueue(
        &self,
        producer: &FutureProducer<Ctx>,
        key: &[u8],
        msg: &BusMessage,
    ) -> Result<DeliveryFuture, BusError> {
        let payload = serde_json::to_vec(msg).map_err(|e| bus_err("encode", e))?;
        producer
            .send_result(
                FutureRecord::to(&self.opts.topic)
                    .key(key)
                    .payload(&payload),
            )
            .map_err(|(e, _)| bus_err("enqueue", e))
    }
}

impl Drop for KafkaBus {
    fn drop(&mut self) {
        self.consumer.abort();
    }
}

fn key_of(msg: &BusMessage) -> Vec<u8> {
    match msg {
        BusMessage::Event { event } => event.key().to_bytes(),
        BusMessage::Typing { from, to } => ConversationId::between(*from, *to).to_bytes().to_vec(),
        BusMessage::Chat { message } => format!("room:{}", message.room).into_bytes(),
        BusMessage::RoomChanged { room } => format!("room:{room}").into_bytes(),
    }
}

async fn settle(fut: DeliveryFuture) -> Result<(), BusError> {
    match fut.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(bus_err("delivery", e)),
        Err(_) => Err(BusError("kafka: producer closed".into())),
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    /// Enqueues the whole batch (in order), then awaits every acknowledgement. `Err` if any
    /// event was not acknowledged: the caller sends the batch again (duplicates possible).
    async fn publish(&self, events: &[Event]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let producer = self.producer();
        let mut pending = Vec::with_capacity(events.len());
        let mut first_err = None;
        for event in events {
            let msg = BusMessage::Event {
                event: event.clone(),
            };
            match self.enqueue(&producer, &key_of(&msg), &msg) {
                Ok(f) => pending.push(settle(f)),
                Err(e) => {
                    first_err = Some(e);
                    break;
                }
            }
        }
        let results = futures_util::future::join_all(pending).await;
        let acked = results.iter().filter(|r| r.is_ok()).count();
        let first_err = first_err.or_else(|| results.into_iter().find_map(Result::err));
        match first_err {
            None => {
                self.ctx.health.ok();
                Ok(())
            }
            Some(e) => {
                self.ctx.health.fail(&e);
                self.renew_if_fatal(&producer);
                Err(BusError(format!(
                    "{acked} of {} events acknowledged: {}",
                    events.len(),
                    e.0
                )))
            }
        }
    }

    /// Sends one typing notice or chat line; waits at most the ephemeral timeout.
    async fn publish_ephemeral(&self, msg: BusMessage) -> Result<(), BusError> {
        let limit = self.opts.ephemeral_timeout + Duration::from_millis(500);
        let r = match self.enqueue(&self.ephemeral, &key_of(&msg), &msg) {
            Ok(f) => tokio::time::timeout(limit, settle(f))
                .await
                .unwrap_or_else(|_| Err(BusError("kafka: ephemeral delivery timed out".into()))),
            Err(e) => Err(e),
        };
        match &r {
            Ok(()) => self.ctx.health.ok(),
            Err(e) => self.ctx.health.fail(e),
        }
        r
    }

    fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.tx.subscribe()
    }
}

/// Creates the topic; any failure but "already exists" is logged and left to the brokers'
/// auto-creation (librdkafka's mock cluster, for one, has no CreateTopics).
async fn create_topic(opts: &KafkaOptions, ctx: &Ctx, deadline: Instant) {
    let admin: AdminClient<Ctx> = match opts.client_config().create_with_context(ctx.clone()) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!("kafka admin client: {e}");
            return;
        }
    };
    let topic = NewTopic::new(
        &opts.topic,
        opts.partitions,
        TopicReplication::Fixed(opts.replication),
    );
    // Brokers without CreateTopics (librdkafka's mock) make this wait the whole time.
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(5))
        .max(Duration::from_millis(1));
    let admin_opts = AdminOptions::new()
        .request_timeout(Some(wait))
        .operation_timeout(Some(wait));
    let fut = admin.create_topics([&topic], &admin_opts);
    match tokio::time::timeout(wait + Duration::from_secs(1), fut).await {
        Ok(Ok(results)) => {
            for r in results {
                match r {
                    Ok(name) => tracing::info!(
                        topic = %name,
                        partitions = opts.partitions,
                        "kafka topic created"
                    ),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => tracing::info!(
                        topic = %name,
                        "kafka topic not created ({code:?}); relying on it existing or auto-creation"
                    ),
                }
            }
        }
        Ok(Err(e)) => tracing::info!(
            topic = %opts.topic,
            "kafka topic not created ({e}); relying on it existing or auto-creation"
        ),
        Err(_) => tracing::info!(topic = %opts.topic, "kafka topic creation timed out"),
    }
}

/// The topic's partition count, if its metadata shows it.
fn partitions_of<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<i32, String> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().len() as i32)
        }
        Some(t) => Err(format!("{:?}", t.error())),
        None => Err("not in metadata".into()),
    }
}

/// The topic's partition count, once its metadata shows it (asking may auto-create it).
fn wait_for_partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    deadline: Instant,
) -> Result<i32, BusError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match partitions_of(client, topic, left.min(Duration::from_secs(5))) {
            Ok(n) => return Ok(n),
            Err(e) => e,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BusError(format!(
                "kafka: topic {topic} unavailable: {last}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100).min(left));
    }
}

/// Feeds the broadcast channel from the topic, forever; picks up new partitions.
async fn consume(
    consumer: Arc<StreamConsumer<Ctx>>,
    topic: String,
    mut partitions: i32,
    tx: broadcast::Sender<BusMessage>,
    health: Arc<Health>,
) {
    let mut refresh = tokio::time::interval(Duration::from_secs(30));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            m = consumer.recv() => match m {
                Ok(m) => {
                    health.ok();
                    match m.payload().map(serde_json::from_slice::<BusMessage>) {
                        Some(Ok(msg)) => {
                            // No receiver is not an error: nobody is connected here.
                            let _ = tx.send(msg);
                        }
                        Some(Err(e)) => tracing::warn!(
                            topic = %topic,
                            partition = m.partition(),
                            offset = m.offset(),
                            "skipping a malformed bus record: {e}"
                        ),
                        None => tracing::warn!(
                            topic = %topic,
                            partition = m.partition(),
                            offset = m.offset(),
                            "skipping an empty bus record"
                        ),
                    }
                }
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                    health.fail(&e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) => {
                    health.fail(&e);
                }
                // One broker gone, a fetch retried: librdkafka recovers by itself.
                Err(e) => tracing::debug!(topic = %topic, "kafka consumer: {e}"),
            },
            _ = refresh.tick() => {
                let (c, t) = (consumer.clone(), topic.clone());
                let grown = tokio::task::spawn_blocking(move || add_new_partitions(&c, &t, partitions)).await;
                if let Ok(Some(n)) = grown {
                    partitions = n;
                }
            }
        }
    }
}

/// Assigns partitions beyond `known` (from their beginning); returns the new count.
fn add_new_partitions(c: &StreamConsumer<Ctx>, topic: &str, known: i32) -> Option<i32> {
    let md = c
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let now = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)?
        .partitions()
        .len() as i32;
    if now <= known {
        return None;
    }
    let mut tpl = TopicPartitionList::new();
    for p in known..now {
        tpl.add_partition_offset(topic, p, Offset::Beginning).ok()?;
    }
    match c.incremental_assign(&tpl) {
        Ok(()) => {
            tracing::info!(
                topic,
                from = known,
                to = now,
                "kafka topic grew; reading the new partitions"
            );
            Some(now)
        }
        Err(e) => {
            tracing::warn!(topic, "kafka: could not assign new partitions: {e}");
            None
        }
    }
}
