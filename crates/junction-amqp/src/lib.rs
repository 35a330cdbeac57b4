//! Junction's AMQP intake (issue: events, "queue ingestion"): event
//! messages consumed from a durable RabbitMQ queue.
//!
//! Delivery is at-least-once and storage exactly-once:
//! - a message is acknowledged only after the handler says it is stored
//!   (its transaction committed), so a crash never loses an acknowledged
//!   message — the broker redelivers what was not acknowledged;
//! - the handler deduplicates by the message id, so a message stored just
//!   before a crash is stored once when it comes again;
//! - a message that can never be stored (poison: not JSON, refused by
//!   validation) is published to a dead-letter queue with the reason in a
//!   header (`x-junction-reason`) and then acknowledged; the handler records
//!   the refusal where users look for refusals;
//! - a transient failure (database down) is negatively acknowledged and
//!   redelivered after a pause.
//!
//! This crate knows AMQP; what a message means is the engine's
//! ([`engine_handler`]: XDS schema and activity messages).

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Where and how to consume.
#[derive(Debug, Clone)]
pub struct Config {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    /// The durable queue consumed (`junction.custom`).
    pub queue: String,
    /// Where poison messages go (`junction.custom.dead`).
    pub dead_letter_queue: String,
    /// Messages handled at once (and the broker's prefetch).
    pub concurrency: u16,
}

impl Config {
    pub fn new(url: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            queue: "junction.custom".into(),
            dead_letter_queue: "junction.custom.dead".into(),
            concurrency: 64,
        }
    }

    /// The URL without its password, for logs.
    pub fn redacted_url(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                format!("{scheme}://{host}")
            }
            None => "amqp://?".into(),
        }
    }
}

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Message {
    pub body: Vec<u8>,
    /// The publisher's `message_id` property, the key for deduplication.
    pub message_id: Option<String>,
    /// The broker delivered it before (to a consumer that did not ack).
    pub redelivered: bool,
}

/// What the handler made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (or already stored: a duplicate): acknowledge.
    Stored,
    /// Can never be stored: dead-letter it with this reason.
    Poison(String),
    /// Could not be stored now: redeliver later.
    Retry(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker closed the consumer")]
    Closed,
    #[error("the broker did not answer within 30 s")]
    Timeout,
}

/// Largest message taken (as over HTTP); a larger one is dead-lettered.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Extra attempts for a schema message that failed for a transient reason.
const SCHEMA_RETRIES: usize = 5;

/// Header carrying the reason a message was dead-lettered.
pub const REASON_HEADER: &str = "x-junction-reason";

/// Consumes until `shutdown` resolves or the connection fails. Messages are
/// handled up to `concurrency` at a time.
pub async fn consume<H, Fut>(config: &Config, handler: H, shutdown: impl Future<Output = ()>) -> Result<(), Error>
where
    H: Fn(Message) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    // A broker that does not answer must not hold up reconnecting or
    // shutting down.
    let connection = tokio::time::timeout(Duration::from_secs(30), Connection::connect(&config.url, properties))
        .await
        .map_err(|_| Error::Timeout)??;
    let channel = connection.create_channel().await?;
    // The broker confirms each dead letter before the original is
    // acknowledged.
    channel.confirm_select(lapin::options::ConfirmSelectOptions::default()).await?;
    channel.basic_qos(config.concurrency, BasicQosOptions::default()).await?;
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(&config.queue, durable, FieldTable::default()).await?;
    channel.queue_declare(&config.dead_letter_queue, durable, FieldTable::default()).await?;
    let consumer =
        channel.basic_consume(&config.queue, "junction", BasicConsumeOptions::default(), FieldTable::default()).await?;
    tracing::info!(url = %config.redacted_url(), queue = %config.queue, "consuming AMQP messages");

    let stopped = std::sync::atomic::AtomicBool::new(false);
    let shutdown = async {
        shutdown.await;
        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let channel_ref = &channel;
    let handler = &handler;
    consumer
        .take_until(shutdown)
        .for_each_concurrent(usize::from(config.concurrency.max(1)), |delivery| async move {
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "AMQP delivery failed");
                    return;
                }
            };
            let message = Message {
                body: delivery.data.clone(),
                message_id: delivery.properties.message_id().as_ref().map(|id| id.to_string()),
                redelivered: delivery.redelivered,
            };
            let message_id = message.message_id.clone();
            let answer = match handler(message).await {
                Outcome::Stored => delivery.ack(BasicAckOptions::default()).await,
                Outcome::Poison(reason) => {
                    tracing::warn!(message_id = ?message_id, reason = %reason, "AMQP message dead-lettered");
                    let mut headers = FieldTable::default();
                    headers.insert(ShortString::from(REASON_HEADER), AMQPValue::LongString(LongString::from(reason)));
                    let mut props = BasicProperties::default().with_headers(headers).with_delivery_mode(2);
                    if let Some(id) = message_id {
                        props = props.with_message_id(ShortString::from(id));
                    }
                    let published = channel_ref
                        .basic_publish(
                            "",
                            &config.dead_letter_queue,
                            BasicPublishOptions::default(),
                            &delivery.data,
                            props,
                        )
                        .await;
                    let confirmed = match published {
                        Ok(confirm) => confirm.await.map(|c| c.is_ack()),
                        Err(e) => Err(e),
                    };
                    match confirmed {
                        Ok(true) => delivery.ack(BasicAckOptions::default()).await,
                        // Not dead-lettered: keep it in the queue rather than lose it.
                        Ok(false) | Err(_) => {
                            tracing::warn!("dead-lettering failed; the message stays in the queue");
                            delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await
                        }
                    }
                }
                Outcome::Retry(why) => {
                    tracing::warn!(message_id = ?message_id, error = %why, "AMQP message not stored; it will come again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await
                }
            };
            if let Err(e) = answer {
                tracing::warn!(error = %e, "AMQP acknowledgement failed; the broker will redeliver");
            }
        })
        .await;
    let connected = connection.status().connected();
    if connected {
        let _ = connection.close(200, "shutting down").await;
    }
    if stopped.load(std::sync::atomic::Ordering::SeqCst) {
        Ok(())
    } else {
        Err(Error::Closed)
    }
}

/// [`consume`] for as long as `shutdown` has not resolved, reconnecting
/// after a failure (1 s, doubling to 30 s).
pub async fn run<H, Fut>(config: Config, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Message) -> Fut,
    Fut: Future<Output = Outcome>,
{
    tokio::pin!(shutdown);
    let mut pause = Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = consume(&config, &handler, async {
            let _ = stop_rx.await;
        });
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => match result {
                Ok(()) => return,
                Err(e) => tracing::warn!(url = %config.redacted_url(), error = %e, "AMQP intake stopped; reconnecting"),
            },
            _ = &mut shutdown => {
                let _ = stop_tx.send(());
                let _ = run.await;
                return;
            }
        }
        // A connection that worked for a while starts the backoff afresh.
        if started.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut shutdown => return,
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

/// The handler `junction serve --amqp-url` uses: each message is an XDS
/// schema or activity message for the engine, deduplicated by its id.
/// Activities are handled concurrently, but a schema message waits for the
/// messages before it and holds back the ones after it until it is
/// registered, so activities published after their schema find it (the
/// queue's order is kept where it matters).
pub fn engine_handler(
    engine: junction_engine::Engine,
) -> impl Fn(Message) -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync {
    let order = std::sync::Arc::new(tokio::sync::RwLock::new(()));
    move |m: Message| {
        let (engine, order) = (engine.clone(), order.clone());
        Box::pin(async move {
            use junction_engine::QueueOutcome;
            if m.body.len() > MAX_MESSAGE_BYTES {
                return Outcome::Poison(format!("the message is larger than {MAX_MESSAGE_BYTES} bytes"));
            }
            if let Some(id) = &m.message_id {
                if id.is_empty() || id.chars().any(char::is_control) {
                    return Outcome::Poison("the message_id is empty or has control characters".into());
                }
            }
            let is_schema = serde_json::from_slice::<serde_json::Value>(&m.body)
                .map(|v| v.get("custom_schema").is_some())
                .unwrap_or(false);
            let outcome = if is_schema {
                // The activities after a schema wait for it, also while a
                // transient failure is retried (a few times, here, holding
                // them back), so they never find it missing.
                let _alone = order.write().await;
                let mut outcome = engine.ingest_queue_message(&m.body, m.message_id.as_deref()).await;
                for _ in 0..SCHEMA_RETRIES {
                    if !matches!(outcome, QueueOutcome::Failed(_)) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    outcome = engine.ingest_queue_message(&m.body, m.message_id.as_deref()).await;
                }
                outcome
            } else {
                let _shared = order.read().await;
                engine.ingest_queue_message(&m.body, m.message_id.as_deref()).await
            };
            match outcome {
                QueueOutcome::Stored | QueueOutcome::Duplicate => Outcome::Stored,
                QueueOutcome::Refused(why) => Outcome::Poison(why),
                QueueOutcome::Failed(why) => Outcome::Retry(why),
            }
        })
    }
}
