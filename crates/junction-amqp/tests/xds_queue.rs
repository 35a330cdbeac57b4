//! XDS messages through the real RabbitMQ into the real engine and store
//! (SQLite and PostgreSQL): schemas and activities are stored, a bad
//! message is dead-lettered and recorded as a rejection, and an activity
//! stored just before a crash (no ack) is redelivered and stored once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use junction_amqp::{consume, engine_handler, Config, Message, Outcome};
use junction_core::SystemClock;
use junction_engine::Engine;
use junction_runtime::{Runtime, RuntimeConfig};
use junction_store::{Location, Sealer, Store};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

struct Harness {
    engine: Engine,
    config: Config,
    channel: Channel,
    _conn: Connection,
    _dir: tempfile::TempDir,
    _pg: Option<junction_testkit::PgSchema>,
}

async fn harness(postgres: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (location, pg) = if postgres {
        let pg = junction_testkit::postgres().await;
        (Location::Postgres(pg.url.clone()), Some(pg))
    } else {
        (Location::in_data_dir(dir.path()), None)
    };
    let store = Store::open(&location, Sealer::from_key([9; 32]), Arc::new(SystemClock)).await.unwrap();
    let mut rc = RuntimeConfig::new(dir.path().join("runtime"));
    rc.spare = false;
    let engine = Engine::new(store, Runtime::start(rc).await.unwrap());
    let mut config = Config::new(URL);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    config.queue = format!("junction.test.{tag}");
    config.dead_letter_queue = format!("junction.test.{tag}.dead");
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = Connection::connect(URL, props).await.expect("RabbitMQ must run on 127.0.0.1:5672");
    let channel = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(&config.queue, durable, FieldTable::default()).await.unwrap();
    Harness { engine, config, channel, _conn: conn, _dir: dir, _pg: pg }
}

impl Harness {
    async fn publish(&self, id: &str, body: &[u8]) {
        let props = BasicProperties::default().with_message_id(ShortString::from(id)).with_delivery_mode(2);
        self.channel
            .basic_publish("", &self.config.queue, BasicPublishOptions::default(), body, props)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn activities(&self) -> Vec<junction_store::XdsActivityRecord> {
        self.engine.store().list_xds_activities(&Default::default(), 100, 0).await.unwrap()
    }

    async fn cleanup(&self) {
        for q in [&self.config.queue, &self.config.dead_letter_queue] {
            let _ = self.channel.queue_delete(q, QueueDeleteOptions::default()).await;
        }
    }
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    for _ in 0..400 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn schema(key: &str) -> Value {
    json!({"api_version": "1", "source_association_key": key, "custom_schema": {
        "name": "Deploy", "schema_id": "deploy-q", "schema_version": 1, "event_time": "2024-01-01T00:00:00Z",
        "fields": ["schema_id", "schema_version", "event_time", "remote_id", "env", "build"],
        "required": ["schema_id", "schema_version", "event_time", "remote_id"], "important": ["env"]}})
}

fn activity(key: &str, remote: &str, env: &str) -> Value {
    json!({"api_version": "1", "source_association_key": key, "custom_data": {
        "schema_id": "deploy-q", "schema_version": 1, "event_time": "2024-01-02T00:00:00Z",
        "remote_id": remote, "env": env}})
}

/// `activity` with a custom field the schema does not declare.
fn activity_with_colour(key: &str, remote: &str, env: &str) -> Value {
    let mut a = activity(key, remote, env);
    a["custom_data"]["colour"] = json!("<b>red</b>");
    a
}

async fn queue_intake(postgres: bool) {
    let h = harness(postgres).await;
    let source = h.engine.create_xds_source("queue-agent").await.unwrap();
    let key = source.source_association_key.clone();
    h.publish("m-schema", schema(&key).to_string().as_bytes()).await;
    // An undeclared custom field is stored, as over HTTP (spec 003).
    h.publish("m-1", activity_with_colour(&key, "deploy-7", "staging").to_string().as_bytes()).await;
    h.publish("m-bad", b"{not json").await;
    h.publish(
        "m-invalid",
        {
            let mut a = activity(&key, "deploy-8", "prod");
            a["custom_data"]["schema_version"] = json!("1");
            a.to_string()
        }
        .as_bytes(),
    )
    .await;

    // Consumer 1 stores each message and then, for "m-2", dies before its
    // acknowledgement.
    let handled = Arc::new(AtomicUsize::new(0));
    let crash_on = "m-2".to_string();
    let consumer = |crash: bool| {
        let (engine, handled, crash_on) = (h.engine.clone(), handled.clone(), crash_on.clone());
        let inner = engine_handler(engine);
        move |m: Message| {
            let handled = handled.clone();
            let is_crash = crash && m.message_id.as_deref() == Some(crash_on.as_str());
            let fut = inner(m);
            async move {
                let out = fut.await;
                handled.fetch_add(1, Ordering::SeqCst);
                if is_crash {
                    std::future::pending::<()>().await;
                }
                out
            }
        }
    };
    let config = h.config.clone();
    let first = tokio::spawn({
        let handler = consumer(true);
        async move { consume(&config, handler, std::future::pending()).await }
    });
    until("the first four messages", || async { handled.load(Ordering::SeqCst) >= 4 }).await;
    let acts = h.activities().await;
    assert_eq!(acts.len(), 1, "the schema and one activity were stored");
    assert_eq!(acts[0].remote_id, "deploy-7");
    // Bad messages: recorded as rejections and dead-lettered.
    let rejections = h.engine.store().list_xds_rejections(&Default::default(), 10, 0).await.unwrap();
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    let passive = QueueDeclareOptions { passive: true, durable: true, ..QueueDeclareOptions::default() };
    until("two dead letters", || async {
        h.channel
            .queue_declare(&h.config.dead_letter_queue, passive, FieldTable::default())
            .await
            .unwrap()
            .message_count()
            == 2
    })
    .await;

    // The crash: stored, never acknowledged.
    h.publish("m-2", activity(&key, "deploy-7", "production").to_string().as_bytes()).await;
    until("m-2 stored", || async { h.activities().await.first().is_some_and(|a| a.sub_event_count == 2) }).await;
    first.abort();
    let _ = first.await;

    // Consumer 2 gets m-2 again: it is acknowledged, not stored twice.
    let before = handled.load(Ordering::SeqCst);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = h.config.clone();
    let second = tokio::spawn({
        let handler = consumer(false);
        async move {
            consume(&config, handler, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    until("the redelivery", || async { handled.load(Ordering::SeqCst) > before }).await;
    stop.send(()).unwrap();
    second.await.unwrap().unwrap();
    let acts = h.activities().await;
    assert_eq!(acts[0].sub_event_count, 2, "the redelivered message was stored once");
    assert_eq!(acts[0].fields["env"], "production");
    // The undeclared field of m-1 is kept through the aggregation, listed,
    // and never rendered.
    assert_eq!(acts[0].fields["colour"], "<b>red</b>");
    assert_eq!(acts[0].undeclared_fields, ["colour"]);
    assert_eq!(acts[0].sub_events[0].undeclared_fields, ["colour"]);
    assert!(acts[0].sub_events[1].undeclared_fields.is_empty());
    assert!(!serde_json::to_string(&acts[0].rendered).unwrap().contains("red"));
    let left = h.channel.queue_declare(&h.config.queue, passive, FieldTable::default()).await.unwrap().message_count();
    assert_eq!(left, 0, "everything was acknowledged");
    h.cleanup().await;
}

#[tokio::test]
async fn xds_messages_from_the_queue_on_sqlite() {
    queue_intake(false).await;
}

#[tokio::test]
async fn xds_messages_from_the_queue_on_postgres() {
    queue_intake(true).await;
}

/// The handler's answer for each kind of message, called directly (the
/// harness still needs RabbitMQ for its queue).
#[tokio::test]
async fn queue_outcomes() {
    let h = harness(false).await;
    let handler = engine_handler(h.engine.clone());
    let msg = |id: &str, body: Vec<u8>| Message { body, message_id: Some(id.into()), redelivered: false };
    let key = h.engine.create_xds_source("direct").await.unwrap().source_association_key;
    assert_eq!(handler(msg("s", schema(&key).to_string().into_bytes())).await, Outcome::Stored);
    assert_eq!(handler(msg("a", activity(&key, "r", "x").to_string().into_bytes())).await, Outcome::Stored);
    assert_eq!(handler(msg("a", activity(&key, "r", "x").to_string().into_bytes())).await, Outcome::Stored);
    assert_eq!(h.activities().await[0].sub_event_count, 1, "the same id twice is stored once");
    assert!(matches!(handler(msg("b", b"[]".to_vec())).await, Outcome::Poison(_)));
    assert!(matches!(handler(msg("a\u{0}", b"{}".to_vec())).await, Outcome::Poison(_)), "a NUL in the id");
    let huge = vec![b' '; junction_amqp::MAX_MESSAGE_BYTES + 1];
    assert!(matches!(handler(msg("c", huge)).await, Outcome::Poison(_)), "too large");
    assert_eq!(h.activities().await[0].sub_event_count, 1);
    h.cleanup().await;
}
