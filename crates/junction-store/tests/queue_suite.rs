//! The durable queue, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use junction_core::clock::ManualClock;
use junction_core::run::State;
use junction_core::secret::SecretString;
use junction_core::Clock;
use junction_store::{Finish, Location, LogLine, NewRun, NewTask, Sealer, Store, StoreError};
use serde_json::json;

struct Harness {
    store: Store,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    _pg: Option<junction_testkit::PgSchema>,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::open(Location::in_data_dir(dir.path()), dir, None).await
    }

    async fn postgres() -> Harness {
        let pg = junction_testkit::postgres().await;
        Harness::open(Location::Postgres(pg.url.clone()), tempfile::tempdir().unwrap(), Some(pg)).await
    }

    async fn open(location: Location, dir: tempfile::TempDir, pg: Option<junction_testkit::PgSchema>) -> Harness {
        let clock = Arc::new(ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap()));
        let store = Store::open(&location, Sealer::from_key([9; 32]), clock.clone()).await.unwrap();
        Harness { store, clock, _dir: dir, _pg: pg }
    }
}

macro_rules! queue_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(&super::Harness::sqlite().await).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(&super::Harness::postgres().await).await } )*
        }
    };
}

queue_suite!(
    a_diamond_runs_in_dependency_order_and_ends_in_success,
    a_failure_skips_the_dependants_and_fails_the_run,
    retries_wait_until_due,
    expired_leases_put_tasks_back_and_the_old_worker_loses_its_claim,
    concurrent_claims_never_share_a_task,
    claims_serve_only_the_named_queues,
    revoke_ends_the_run_and_refuses_a_finished_one,
    idempotency_keys_return_the_same_run_for_a_day,
    logs_are_appended_in_batches_and_read_in_order,
    secret_run_params_are_sealed,
    saved_data_holding_a_secret_is_stored_masked_and_read_in_full,
    completions_of_many_runs_commit_together,
);

async fn completions_of_many_runs_commit_together(h: &Harness) {
    for i in 0..4 {
        h.store.create_run(&run(&format!("b{i}"), "default", vec![task(&format!("b{i}-a"), "a", 0, 0)])).await.unwrap();
        claim(h).await.unwrap();
    }
    let item = |id: &str, worker: &str| junction_store::FinishItem {
        task_id: id.into(),
        worker: worker.into(),
        finish: ok(&[]),
    };
    let ended = h
        .store
        .finish_tasks(&[item("b2-a", W), item("b0-a", W), item("b3-a", "someone-else"), item("b1-a", W)])
        .await
        .unwrap();
    assert_eq!(
        ended,
        [Some(State::Success), Some(State::Success), None, Some(State::Success)],
        "results in input order"
    );
    assert_eq!(h.store.get_run("b3").await.unwrap().unwrap().state, State::Started, "a stale item changes nothing");
}

const W: &str = "worker-1";
const LEASE: Duration = Duration::from_secs(30);

fn task(id: &str, name: &str, index: i64, waiting_on: i64) -> NewTask {
    NewTask {
        id: id.into(),
        step_name: name.into(),
        step_index: index,
        step_file: "S".into(),
        step_version: Some(1),
        waiting_on,
    }
}

fn run(id: &str, queue: &str, tasks: Vec<NewTask>) -> NewRun {
    NewRun {
        id: id.into(),
        application: "app".into(),
        app_revision: 1,
        queue: queue.into(),
        trigger_kind: "manual".into(),
        triggered_by: Some("test".into()),
        configuration: None,
        params: json!({"k": "v"}),
        secret_params: vec![],
        context: None,
        log_level: 20,
        idempotency_key: None,
        tasks,
        max_active: None,
    }
}

fn diamond(id: &str) -> NewRun {
    run(
        id,
        "default",
        vec![
            task(&format!("{id}-a"), "a", 0, 0),
            task(&format!("{id}-b"), "b", 1, 1),
            task(&format!("{id}-c"), "c", 2, 1),
            task(&format!("{id}-d"), "d", 3, 2),
        ],
    )
}

fn q() -> Vec<String> {
    vec!["default".to_string()]
}

fn ok(children: &[&str]) -> Finish {
    Finish::Success {
        output: Some(json!({"n": 1})),
        sealed_output: None,
        result: Some("done".into()),
        children: children.iter().map(|c| c.to_string()).collect(),
    }
}

async fn claim(h: &Harness) -> Option<String> {
    h.store.claim_task(W, &q(), LEASE).await.unwrap().map(|t| t.step_name)
}

async fn a_diamond_runs_in_dependency_order_and_ends_in_success(h: &Harness) {
    let (created, new) = h.store.create_run(&diamond("r1")).await.unwrap();
    assert!(new);
    assert_eq!(created.state, State::Pending);
    let states: Vec<State> = h.store.run_tasks("r1").await.unwrap().iter().map(|t| t.state).collect();
    assert_eq!(states, [State::Pending, State::Waiting, State::Waiting, State::Waiting]);

    let a = h.store.claim_task(W, &q(), LEASE).await.unwrap().unwrap();
    assert_eq!((a.step_name.as_str(), a.state, a.attempts), ("a", State::Started, 1));
    assert_eq!(h.store.get_run("r1").await.unwrap().unwrap().state, State::Started);
    assert_eq!(claim(h).await, None, "b and c wait for a");
    assert_eq!(h.store.finish_task(&a.id, W, &ok(&["b", "c"])).await.unwrap(), None);
    let mut middle = vec![claim(h).await.unwrap(), claim(h).await.unwrap()];
    middle.sort();
    assert_eq!(middle, ["b", "c"]);
    assert_eq!(claim(h).await, None, "d waits for both");
    assert_eq!(h.store.finish_task("r1-b", W, &ok(&["d"])).await.unwrap(), None);
    assert_eq!(claim(h).await, None, "d still waits for c");
    assert_eq!(h.store.finish_task("r1-c", W, &ok(&["d"])).await.unwrap(), None);
    assert_eq!(claim(h).await.as_deref(), Some("d"));
    assert_eq!(h.store.finish_task("r1-d", W, &ok(&[])).await.unwrap(), Some(State::Success));
    let done = h.store.get_run("r1").await.unwrap().unwrap();
    assert_eq!(done.state, State::Success);
    assert!(done.finished_at.is_some());
    let a = h.store.get_task("r1-a").await.unwrap().unwrap();
    assert_eq!((a.output, a.result.as_deref()), (Some(json!({"n": 1})), Some("done")));
}

async fn a_failure_skips_the_dependants_and_fails_the_run(h: &Harness) {
    h.store.create_run(&diamond("r2")).await.unwrap();
    claim(h).await.unwrap();
    h.store.finish_task("r2-a", W, &ok(&["b", "c"])).await.unwrap();
    claim(h).await.unwrap();
    claim(h).await.unwrap();
    let failure = Finish::Failure { result: Some("boom".into()), traceback: Some("tb".into()), skip: vec!["d".into()] };
    assert_eq!(h.store.finish_task("r2-b", W, &failure).await.unwrap(), None, "c still runs");
    assert_eq!(h.store.get_task("r2-d").await.unwrap().unwrap().state, State::Revoked);
    assert_eq!(h.store.finish_task("r2-c", W, &ok(&["d"])).await.unwrap(), Some(State::Failure));
    assert_eq!(h.store.get_task("r2-d").await.unwrap().unwrap().state, State::Revoked, "d is not revived");
    let b = h.store.get_task("r2-b").await.unwrap().unwrap();
    assert_eq!((b.state, b.traceback.as_deref()), (State::Failure, Some("tb")));
}

async fn retries_wait_until_due(h: &Harness) {
    h.store.create_run(&run("r3", "default", vec![task("r3-a", "a", 0, 0)])).await.unwrap();
    claim(h).await.unwrap();
    let due = h.clock.now().checked_add(SignedDuration::from_secs(4)).unwrap();
    let retry = Finish::Retry { due_at: due, result: Some("try again".into()), traceback: None };
    assert_eq!(h.store.finish_task("r3-a", W, &retry).await.unwrap(), None);
    let t = h.store.get_task("r3-a").await.unwrap().unwrap();
    assert_eq!((t.state, t.due_at), (State::Retry, due));
    assert_eq!(claim(h).await, None, "not due yet");
    h.clock.advance(SignedDuration::from_secs(4));
    let again = h.store.claim_task(W, &q(), LEASE).await.unwrap().unwrap();
    assert_eq!(again.attempts, 2);
    assert_eq!(h.store.finish_task("r3-a", W, &ok(&[])).await.unwrap(), Some(State::Success));
}

async fn expired_leases_put_tasks_back_and_the_old_worker_loses_its_claim(h: &Harness) {
    h.store.create_run(&run("r4", "default", vec![task("r4-a", "a", 0, 0)])).await.unwrap();
    h.store.claim_task("dead-worker", &q(), Duration::from_secs(5)).await.unwrap().unwrap();
    assert!(h.store.heartbeat("r4-a", "dead-worker", Duration::from_secs(5)).await.unwrap());
    h.clock.advance(SignedDuration::from_secs(3));
    assert!(h.store.requeue_expired().await.unwrap().is_empty(), "the lease is alive");
    h.clock.advance(SignedDuration::from_secs(10));
    let lost = h.store.requeue_expired().await.unwrap();
    assert_eq!(lost, vec![("r4".to_string(), "r4-a".to_string(), 1)]);
    let t = h.store.claim_task(W, &q(), LEASE).await.unwrap().unwrap();
    assert_eq!(t.attempts, 2);
    assert!(!h.store.heartbeat("r4-a", "dead-worker", LEASE).await.unwrap());
    assert_eq!(h.store.finish_task("r4-a", "dead-worker", &ok(&[])).await.unwrap(), None, "stale finish ignored");
    assert_eq!(h.store.get_task("r4-a").await.unwrap().unwrap().state, State::Started);
    assert_eq!(h.store.finish_task("r4-a", W, &ok(&[])).await.unwrap(), Some(State::Success));
}

async fn concurrent_claims_never_share_a_task(h: &Harness) {
    for i in 0..6 {
        h.store.create_run(&run(&format!("c{i}"), "default", vec![task(&format!("c{i}-a"), "a", 0, 0)])).await.unwrap();
    }
    let mut handles = Vec::new();
    for w in 0..12 {
        let store = h.store.clone();
        handles.push(tokio::spawn(
            async move { store.claim_task(&format!("w{w}"), &["default".to_string()], LEASE).await },
        ));
    }
    let mut claimed = Vec::new();
    for handle in handles {
        if let Some(t) = handle.await.unwrap().unwrap() {
            claimed.push(t.id);
        }
    }
    claimed.sort();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!((before, claimed.len()), (6, 6), "{claimed:?}");
}

async fn claims_serve_only_the_named_queues(h: &Harness) {
    h.store.create_run(&run("q1", "reports", vec![task("q1-a", "a", 0, 0)])).await.unwrap();
    assert!(h.store.claim_task(W, &q(), LEASE).await.unwrap().is_none());
    assert!(h.store.claim_task(W, &[], LEASE).await.unwrap().is_none());
    let t = h.store.claim_task(W, &["other".to_string(), "reports".to_string()], LEASE).await.unwrap().unwrap();
    assert_eq!(t.queue, "reports");
}

async fn revoke_ends_the_run_and_refuses_a_finished_one(h: &Harness) {
    h.store.create_run(&diamond("r5")).await.unwrap();
    claim(h).await.unwrap();
    let started = h.store.revoke_run("r5", "revoked by admin").await.unwrap();
    assert_eq!(started, ["r5-a"]);
    let r = h.store.get_run("r5").await.unwrap().unwrap();
    assert_eq!((r.state, r.error.as_deref()), (State::Revoked, Some("revoked by admin")));
    assert!(h.store.run_tasks("r5").await.unwrap().iter().all(|t| t.state == State::Revoked));
    assert!(!h.store.heartbeat("r5-a", W, LEASE).await.unwrap(), "the worker learns by heartbeat");
    assert_eq!(h.store.finish_task("r5-a", W, &ok(&["b", "c"])).await.unwrap(), None);
    assert!(matches!(h.store.revoke_run("r5", "again").await, Err(StoreError::Conflict(_))));
    assert!(matches!(h.store.revoke_run("nope", "x").await, Err(StoreError::NotFound(_))));
}

async fn idempotency_keys_return_the_same_run_for_a_day(h: &Harness) {
    let mut first = run("i1", "default", vec![task("i1-a", "a", 0, 0)]);
    first.idempotency_key = Some("key-1".into());
    assert!(h.store.create_run(&first).await.unwrap().1);
    let mut second = run("i2", "default", vec![task("i2-a", "a", 0, 0)]);
    second.idempotency_key = Some("key-1".into());
    let (got, new) = h.store.create_run(&second).await.unwrap();
    assert_eq!((got.id.as_str(), new), ("i1", false));
    assert!(h.store.get_run("i2").await.unwrap().is_none());
    h.clock.advance(SignedDuration::from_hours(25));
    let (got, new) = h.store.create_run(&second).await.unwrap();
    assert_eq!((got.id.as_str(), new), ("i2", true), "after 24 h the key starts a new run");
}

async fn logs_are_appended_in_batches_and_read_in_order(h: &Harness) {
    h.store.create_run(&run("l1", "default", vec![task("l1-a", "a", 0, 0), task("l1-b", "b", 1, 0)])).await.unwrap();
    let line = |task: &str, n: usize| LogLine {
        run_id: "l1".into(),
        task_id: task.into(),
        ts: Timestamp::from_second(1_800_000_000).unwrap(),
        level: "INFO".into(),
        line: format!("line {n}"),
    };
    let batch: Vec<LogLine> = (0..2500).map(|n| line(if n % 2 == 0 { "l1-a" } else { "l1-b" }, n)).collect();
    h.store.append_logs(&batch).await.unwrap();
    let all = h.store.logs("l1", None, 0, 10_000).await.unwrap();
    assert_eq!(all.len(), 2500);
    assert_eq!(all[0].1, batch[0]);
    assert_eq!(all[2499].1, batch[2499]);
    let a = h.store.logs("l1", Some("l1-a"), 0, 10_000).await.unwrap();
    assert_eq!(a.len(), 1250);
    let after = h.store.logs("l1", None, all[9].0, 5).await.unwrap();
    assert_eq!(
        after.iter().map(|(_, l)| l.line.clone()).collect::<Vec<_>>(),
        ["line 10", "line 11", "line 12", "line 13", "line 14"]
    );
}

async fn secret_run_params_are_sealed(h: &Harness) {
    let mut r = run("s1", "default", vec![task("s1-a", "a", 0, 0)]);
    r.secret_params = vec![("token".into(), SecretString::new("RUN-SECRET-1"))];
    h.store.create_run(&r).await.unwrap();
    let got = h.store.run_secret_params("s1").await.unwrap();
    assert_eq!((got[0].0.as_str(), got[0].1.expose()), ("token", "RUN-SECRET-1"));
    let stored = h.store.get_run("s1").await.unwrap().unwrap();
    assert!(!stored.params.to_string().contains("RUN-SECRET-1"));
}

async fn saved_data_holding_a_secret_is_stored_masked_and_read_in_full(h: &Harness) {
    h.store.create_run(&run("o1", "default", vec![task("o1-a", "a", 0, 0), task("o1-b", "b", 1, 0)])).await.unwrap();
    let a = h.store.claim_task(W, &q(), LEASE).await.unwrap().unwrap();
    let masked = Finish::Success {
        output: Some(json!({"pw": "********"})),
        sealed_output: Some(SecretString::new(json!({"pw": "SAVED-SECRET-3"}).to_string())),
        result: None,
        children: vec![],
    };
    h.store.finish_task(&a.id, W, &masked).await.unwrap();
    let b = h.store.claim_task(W, &q(), LEASE).await.unwrap().unwrap();
    h.store.finish_task(&b.id, W, &ok(&[])).await.unwrap();
    assert_eq!(h.store.get_task(&a.id).await.unwrap().unwrap().output, Some(json!({"pw": "********"})));
    let full = h.store.run_outputs("o1").await.unwrap();
    assert_eq!(full.get(&a.step_name), Some(&json!({"pw": "SAVED-SECRET-3"})), "the next steps read the full data");
    assert_eq!(full.get(&b.step_name), Some(&json!({"n": 1})), "data without a secret is stored as it is");
    if h._pg.is_none() {
        assert!(h._dir.path().join("junction.db").is_file(), "the SQLite database is in the data dir");
        junction_testkit::assert_not_in_files(h._dir.path(), "", &["SAVED-SECRET-3"]);
    }
}
