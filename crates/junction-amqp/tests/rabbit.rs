//! Against the real RabbitMQ on 127.0.0.1:5672 (guest/guest): poison
//! messages are dead-lettered with their reason, and a message stored just
//! before a crash (no ack) comes again and is stored once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use junction_amqp::{consume, Config, Message, Outcome, REASON_HEADER};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A config with queues of its own, so tests do not see each other's
/// messages.
fn config() -> Config {
    let mut c = Config::new(URL);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    c.queue = format!("junction.test.{tag}");
    c.dead_letter_queue = format!("junction.test.{tag}.dead");
    c.concurrency = 8;
    c
}

async fn channel() -> (Connection, Channel) {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn =
        Connection::connect(URL, props).await.expect("RabbitMQ must run on 127.0.0.1:5672 (rabbitmq-server -detached)");
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

async fn publish(ch: &Channel, c: &Config, id: &str, body: &[u8]) {
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    ch.queue_declare(&c.queue, durable, FieldTable::default()).await.unwrap();
    let props = BasicProperties::default().with_message_id(ShortString::from(id)).with_delivery_mode(2);
    ch.basic_publish("", &c.queue, BasicPublishOptions::default(), body, props).await.unwrap().await.unwrap();
}

async fn count(ch: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, durable: true, ..QueueDeclareOptions::default() };
    ch.queue_declare(queue, passive, FieldTable::default()).await.unwrap().message_count()
}

async fn cleanup(ch: &Channel, c: &Config) {
    for q in [&c.queue, &c.dead_letter_queue] {
        let _ = ch.queue_delete(q, QueueDeleteOptions::default()).await;
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn poison_is_dead_lettered_with_its_reason_and_good_messages_are_acknowledged() {
    let c = config();
    let (_conn, ch) = channel().await;
    publish(&ch, &c, "good-1", br#"{"ok": 1}"#).await;
    publish(&ch, &c, "bad-1", b"not json").await;
    publish(&ch, &c, "good-2", br#"{"ok": 2}"#).await;

    let stored = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (cc, seen) = (c.clone(), stored.clone());
    let task = tokio::spawn(async move {
        consume(
            &cc,
            move |m: Message| {
                let seen = seen.clone();
                async move {
                    if serde_like_json(&m.body) {
                        seen.lock().unwrap().push(m.message_id.unwrap_or_default());
                        Outcome::Stored
                    } else {
                        Outcome::Poison("the body is not JSON".into())
                    }
                }
            },
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    until("two stored", || stored.lock().unwrap().len() == 2).await;
    // The dead letter arrives with its id and reason.
    let mut dead = None;
    for _ in 0..100 {
        dead = ch.basic_get(&c.dead_letter_queue, BasicGetOptions { no_ack: true }).await.unwrap();
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let dead = dead.expect("a dead letter");
    assert_eq!(dead.delivery.data, b"not json");
    assert_eq!(dead.delivery.properties.message_id().as_ref().map(|s| s.as_str()), Some("bad-1"));
    let headers = dead.delivery.properties.headers().clone().unwrap();
    match headers.inner().get(REASON_HEADER) {
        Some(AMQPValue::LongString(s)) => assert_eq!(s.to_string(), "the body is not JSON"),
        other => panic!("reason header: {other:?}"),
    }
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(count(&ch, &c.queue).await, 0, "everything was acknowledged");
    let mut ids = stored.lock().unwrap().clone();
    ids.sort();
    assert_eq!(ids, ["good-1", "good-2"]);
    cleanup(&ch, &c).await;
}

/// The test handler's stand-in for parsing: a body that looks like JSON.
fn serde_like_json(body: &[u8]) -> bool {
    body.first() == Some(&b'{')
}

/// The consumer's half of "stored once": a message whose handler did not
/// finish (the process died before the acknowledgement) comes again,
/// marked redelivered. That the store then keeps it once is tested with the
/// real engine in `xds_queue.rs` and with `kill -9` in the CLI tests.
#[tokio::test]
async fn a_message_not_acknowledged_before_a_crash_is_delivered_again() {
    let c = config();
    let (_conn, ch) = channel().await;
    publish(&ch, &c, "event-42", br#"{"n": 42}"#).await;
    let deliveries: Arc<Mutex<Vec<bool>>> = Arc::default();

    // The first consumer stores the message, then "crashes" before its
    // acknowledgement: its task is dropped with the handler still running.
    let handler = |deliveries: Arc<Mutex<Vec<bool>>>, hang: bool| {
        move |m: Message| {
            let deliveries = deliveries.clone();
            async move {
                deliveries.lock().unwrap().push(m.redelivered);
                assert_eq!(m.message_id.as_deref(), Some("event-42"));
                if hang {
                    std::future::pending::<()>().await;
                }
                Outcome::Stored
            }
        }
    };
    let cc = c.clone();
    let first = tokio::spawn({
        let h = handler(deliveries.clone(), true);
        async move { consume(&cc, h, std::future::pending()).await }
    });
    until("the first delivery", || deliveries.lock().unwrap().len() == 1).await;
    first.abort();
    let _ = first.await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cc = c.clone();
    let second = tokio::spawn({
        let h = handler(deliveries.clone(), false);
        async move {
            consume(&cc, h, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    until("the redelivery", || deliveries.lock().unwrap().len() == 2).await;
    // A stopping consumer finishes (and acknowledges) what it is handling.
    stop.send(()).unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(*deliveries.lock().unwrap(), [false, true], "delivered, then redelivered after the crash");
    assert_eq!(count(&ch, &c.queue).await, 0, "acknowledged the second time");
    cleanup(&ch, &c).await;
}
