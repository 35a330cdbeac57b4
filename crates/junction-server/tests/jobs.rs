//! Schedules, the scheduler, spec 000's jobs grid, automated triggers and
//! history, through the HTTP API of the real server. The scheduler is driven
//! with a manual clock (`Engine::fire_due`), so every tick is exact.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{details, on_both, Options, TestServer, ADMIN};
use jiff::{SignedDuration, Timestamp};
use junction_core::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Monday 2026-11-23 08:00 UTC.
fn t0() -> Timestamp {
    "2026-11-23T08:00:00Z".parse().unwrap()
}

fn manual() -> (Arc<ManualClock>, Options) {
    let clock = Arc::new(ManualClock::new(t0()));
    (clock.clone(), Options { clock, workers: 0 })
}

/// A spec 000 job script: logs what it was given.
const JOB_JS: &str = r#"let run = function (args) {
    return new Promise(function (resolve, reject) {
        console.log('args ' + JSON.stringify({arguments: args.arguments, plutoraValues: args.plutoraValues,
            lastRunDateUtc: args.lastRunDateUtc, lastSuccessfulRunDateUtc: args.lastSuccessfulRunDateUtc,
            global: args.globalArguments}));
        resolve('done');
    });
};
module.exports = { run: run };"#;

const SECRET: &str = "masked-value-7f3a9c";

/// A spec 000 job: one JavaScript step, a plain and a masked parameter.
async fn make_job(s: &TestServer, name: &str) {
    let (status, body) = s.post("/api/v1/steps", json!({"name": "jobscript", "data": JOB_JS})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let app = json!({
        "name": name,
        "description": format!("the {name} job"),
        "app_variables": [
            {"name": "region", "value": "eu"},
            {"name": "apiKey", "value": SECRET, "encrypted": true},
        ],
        "steps": [{"name": "main", "file": "jobscript"}],
    });
    let (status, body) = s.post("/api/v1/applications", app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn every_minute(app: &str, start: &str) -> Value {
    json!({"application_id": app, "schedule": {"schedule_type": "interval",
        "schedule_info": {"frequency": "Minute", "repeat_every": 1, "start_on": start}}})
}

async fn add_schedule(s: &TestServer, body: Value) -> Value {
    let (status, body) = s.post("/api/v1/schedule", body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn runs_of(s: &TestServer, app: &str) -> Vec<Value> {
    let (status, body) = s.get(&format!("/api/v1/jobs/{app}/history?limit=200")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

async fn job(s: &TestServer, name: &str) -> Value {
    let (status, body) = s.get("/api/v1/jobs").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no job {name}: {body}"))
}

fn advance(clock: &ManualClock, secs: i64) {
    clock.advance(SignedDuration::from_secs(secs));
}

/// Hostile schedules: the same answers on both backends.
async fn bad_schedules_are_refused_naming_the_field(_clock: Arc<ManualClock>, s: TestServer) {
    make_job(&s, "job").await;
    let interval = |info: Value| json!({"application_id": "job", "schedule": {"schedule_type": "interval", "schedule_info": info}});
    let cases = [
        (
            interval(json!({"frequency": "Minute", "repeat_every": 0, "start_on": "2026-11-23T09:00"})),
            "schedule.schedule_info.repeat_every",
            "too_small",
        ),
        (
            interval(json!({"frequency": "Yearly", "repeat_every": 1, "start_on": "2026-11-23T09:00"})),
            "schedule.schedule_info.frequency",
            "one_of",
        ),
        (
            interval(json!({"frequency": "Daily", "repeat_every": 1, "start_on": "next tuesday"})),
            "schedule.schedule_info.start_on",
            "date_time",
        ),
        (
            json!({"application_id": "job", "schedule": {"schedule_type": "cron", "schedule_info": {"expression": "61 * * * *"}}}),
            "schedule.schedule_info.expression",
            "cron",
        ),
        (
            json!({"application_id": "job", "schedule": {"schedule_type": "crontab", "schedule_info": {"hour": "25"}}}),
            "schedule.schedule_info.hour",
            "cron",
        ),
        (
            json!({"application_id": "job", "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": "3600"}}}),
            "schedule.schedule_info.run_every",
            "type",
        ),
        (
            json!({"application_id": "job", "timezone": "Mars/Olympus_Mons", "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 60}}}),
            "timezone",
            "time_zone",
        ),
        (
            json!({"application_id": "nope", "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 60}}}),
            "application_id",
            "exists",
        ),
        (
            json!({"application_id": "job", "schedule": {"schedule_type": "hourly", "schedule_info": {}}}),
            "schedule.schedule_type",
            "one_of",
        ),
    ];
    for (body, field, rule) in cases {
        let (status, answer) = s.post("/api/v1/schedule", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert!(details(&answer).contains(&(field.to_string(), rule.to_string())), "{body} -> {answer}");
    }
    let (_, list) = s.get("/api/v1/schedule").await;
    assert_eq!(list, json!([]), "nothing refused was stored");
    // spec 004's meta.json entry loads as it is.
    let entry = json!({"application_id": "job", "entry_id": "job app", "params": {},
        "schedule": {"schedule_info": {"run_every": 3600}, "schedule_type": "frequency"}});
    let stored = add_schedule(&s, entry).await;
    assert_eq!(stored["description"], "Every hour");
    assert_eq!(stored["entry_id"], "job app");
    // A viewer may read but not schedule.
    let viewer = s.token("viewer").await;
    let (status, _) = s
        .send(reqwest::Method::POST, "/api/v1/schedule", Some(&viewer), Some(&every_minute("job", "2026-11-23T09:00")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

on_both!(bad_schedules_are_refused_naming_the_field);

/// Exactly one run per tick; a missed stretch fires once; re-saving keeps
/// the tick, editing moves it; disabled and deleted schedules never fire.
/// Fires what is due and ends the runs started (no worker runs them), so
/// the next tick is not held back by a running instance.
async fn fire(s: &TestServer) -> usize {
    let report = s.engine.fire_due().await.unwrap();
    assert_eq!(report.blocked, 0, "{report:?}");
    for run in &report.started {
        s.engine.revoke_run(run, "test").await.unwrap();
    }
    report.started.len()
}

async fn ticks_fire_exactly_once(clock: Arc<ManualClock>, s: TestServer) {
    make_job(&s, "sync").await;
    let sched = add_schedule(&s, every_minute("sync", "2026-11-23T08:01")).await;
    let id = sched["id"].as_str().unwrap().to_string();
    assert_eq!(sched["next_fire_at"], "2026-11-23T08:01:00Z");
    assert_eq!(sched["description"], "Every minute from 2026-11-23 08:01 UTC");

    assert!(fire(&s).await == 0, "not due yet");
    advance(&clock, 60);
    assert_eq!(fire(&s).await, 1, "due at 08:01");
    assert!(fire(&s).await == 0, "the same tick never fires twice");
    assert_eq!(runs_of(&s, "sync").await.len(), 1);
    let (_, got) = s.get(&format!("/api/v1/schedule/{id}")).await;
    assert_eq!(got["next_fire_at"], "2026-11-23T08:02:00Z");

    // Down for ten minutes: one catch-up run, then the next tick after now.
    advance(&clock, 10 * 60 + 30);
    assert_eq!(fire(&s).await, 1, "a catch-up fires once, not once per missed tick");
    let (_, got) = s.get(&format!("/api/v1/schedule/{id}")).await;
    assert_eq!(got["next_fire_at"], "2026-11-23T08:12:00Z");
    assert_eq!(runs_of(&s, "sync").await.len(), 2);

    // Re-saving the same schedule keeps its tick; it fires once at 08:12.
    let mut same = every_minute("sync", "2026-11-23T08:01");
    same["id"] = json!(id);
    let (status, again) = s.post("/api/v1/schedule", same.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["next_fire_at"], "2026-11-23T08:12:00Z");
    advance(&clock, 30);
    assert_eq!(fire(&s).await, 1);
    let (status, _) = s.post("/api/v1/schedule", same).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fire(&s).await == 0, "re-saving never fires a tick again");

    // Editing moves the tick to the new rule's next one after now.
    let mut edited = json!({"id": id, "application_id": "sync",
        "schedule": {"schedule_type": "cron", "schedule_info": {"expression": "*/5 * * * *"}}});
    let (status, got) = s.post("/api/v1/schedule", edited.clone()).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["next_fire_at"], "2026-11-23T08:15:00Z");
    assert!(fire(&s).await == 0);
    advance(&clock, 3 * 60);
    assert_eq!(fire(&s).await, 1, "fires on the edited rule at 08:15");
    assert_eq!(runs_of(&s, "sync").await.len(), 4);

    // Disabled at the moment it is due: no run, and none when re-enabled.
    advance(&clock, 5 * 60);
    let (status, j) = s.patch("/api/v1/jobs/sync", json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(j["next_run"], "Disabled");
    assert!(fire(&s).await == 0, "a disabled schedule never fires");
    advance(&clock, 60 * 60 + 30);
    assert!(fire(&s).await == 0);
    let (status, j) = s.patch("/api/v1/jobs/sync", json!({"enabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(j["next_run_at"], "2026-11-23T09:25:00Z", "re-enabled: the next tick after now, no catch-up");
    assert!(fire(&s).await == 0);
    assert_eq!(runs_of(&s, "sync").await.len(), 4);

    // Deleted while due: never fires.
    advance(&clock, 60 * 5);
    let (status, _) = s.delete(&format!("/api/v1/schedule/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(fire(&s).await == 0, "a deleted schedule never fires");
    assert_eq!(runs_of(&s, "sync").await.len(), 4);
    let (status, _) = s.delete(&format!("/api/v1/schedule/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A tick read by the scheduler before an edit commits is not fired,
    // also when the edit keeps the tick (only the params changed).
    edited["id"] = json!("third");
    let (status, _) = s.post("/api/v1/schedule", edited.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    advance(&clock, 60 * 5);
    let read = s.engine.store().due_schedules(clock_now(&clock), 10, None).await.unwrap();
    assert_eq!(read.len(), 1);
    advance(&clock, 1);
    edited["params"] = json!({"region": "us"});
    let (status, _) = s.post("/api/v1/schedule", edited.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let old_read = junction_store::Firing {
        schedule_id: "third".into(),
        due_at: read[0].next_fire_at.unwrap(),
        version: read[0].updated_at,
        next_fire_at: None,
        run: None,
        error: None,
        one_instance: true,
    };
    assert_eq!(s.engine.store().fire_schedules(&[old_read]).await.unwrap(), vec![junction_store::Fired::Stale]);
    assert_eq!(fire(&s).await, 1, "the edited schedule still fires its tick");
    s.engine.store().delete_schedule("third").await.unwrap();

    edited["id"] = json!("second");
    let (status, _) = s.post("/api/v1/schedule", edited).await;
    assert_eq!(status, StatusCode::CREATED);
    advance(&clock, 60 * 5);
    let due = s.engine.store().due_schedules(clock_now(&clock), 10, None).await.unwrap();
    assert_eq!(due.len(), 1);
    s.engine.store().delete_schedule("second").await.unwrap();
    let stale = junction_store::Firing {
        schedule_id: "second".into(),
        due_at: due[0].next_fire_at.unwrap(),
        version: due[0].updated_at,
        next_fire_at: None,
        run: None,
        error: None,
        one_instance: true,
    };
    assert_eq!(s.engine.store().fire_schedules(&[stale]).await.unwrap(), vec![junction_store::Fired::Stale]);
}
on_both!(ticks_fire_exactly_once);

fn clock_now(clock: &ManualClock) -> Timestamp {
    use junction_core::Clock;
    clock.now()
}

/// A scheduled job has one running instance: a tick that comes while it
/// runs waits (Overdue) and fires once when it ends. Automated runs go
/// concurrently, up to `max_concurrency` when set.
async fn one_instance_for_schedules_many_for_automation(clock: Arc<ManualClock>, s: TestServer) {
    make_job(&s, "nightly").await;
    // Refused, not a 500 (NUL) and not stored in clear (a masked value).
    let (status, body) = s.post("/api/v1/schedule", every_minute("night\u{0}ly", "2026-11-23T08:01")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut masked = every_minute("nightly", "2026-11-23T08:01");
    masked["params"] = json!({"apiKey": "schedule-secret-31"});
    let (status, body) = s.post("/api/v1/schedule", masked).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(details(&body), vec![("params.apiKey".to_string(), "encrypted".to_string())]);
    add_schedule(&s, every_minute("nightly", "2026-11-23T08:01")).await;
    advance(&clock, 60);
    let first = s.engine.fire_due().await.unwrap();
    assert_eq!(first.started.len(), 1);
    let j = job(&s, "nightly").await;
    assert_eq!(j["next_run"], "Running", "{j}");
    assert_eq!(j["trigger"], "scheduled");

    // Three more ticks pass while the first run is still going (no worker).
    for _ in 0..3 {
        advance(&clock, 60);
        let r = s.engine.fire_due().await.unwrap();
        assert!(r.started.is_empty(), "no second instance: {r:?}");
        assert_eq!(r.blocked, 1);
    }
    let j = job(&s, "nightly").await;
    assert_eq!(j["next_run"], "Overdue", "{j}");
    assert_eq!(j["running"], 1);
    assert_eq!(runs_of(&s, "nightly").await.len(), 1);

    // The first run is stopped: the waiting tick fires once, no pile-up.
    let (status, stopped) = s.post("/api/v1/jobs/nightly/stop", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["stopped"], json!([first.started[0]]));
    let log = s.text(&format!("/api/v1/tasks/{}/log", first.started[0])).await;
    assert!(log.contains("Job was stopped by user"), "{log}");
    let r = s.engine.fire_due().await.unwrap();
    assert_eq!(r.started.len(), 1, "{r:?}");
    assert!(s.engine.fire_due().await.unwrap().started.is_empty());
    assert_eq!(runs_of(&s, "nightly").await.len(), 2);
    let j = job(&s, "nightly").await;
    assert_eq!(j["next_run"], "Running");
    assert_eq!(j["next_run_at"], "2026-11-23T08:05:00Z");

    // Automated jobs: refused while the server setting is off.
    let (status, body) = s.post("/api/v1/applications/nightly/trigger", json!({"context": {}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = s.put("/api/v1/settings", json!({"automated_jobs_enabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let operator = s.token("operator").await;
    let (status, _) = s
        .send(
            reqwest::Method::PUT,
            "/api/v1/settings",
            Some(&operator),
            Some(&json!({"automated_jobs_enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "settings are an administrator's");
    // Concurrent automated runs, beside the scheduled one.
    for _ in 0..3 {
        let (status, body) = s
            .send(
                reqwest::Method::POST,
                "/api/v1/applications/nightly/trigger",
                Some(&operator),
                Some(&json!({"context": {"Build": {"BuildNumber": "42"}}})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_eq!(job(&s, "nightly").await["running"], 4);
    // The parameter list cannot change, only values.
    let (status, body) = s.post("/api/v1/applications/nightly/trigger", json!({"arguments": {"color": "red"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(details(&body), vec![("arguments.color".to_string(), "unknown_parameter".to_string())]);

    // A cap on automated runs.
    make_job(&s, "capped").await;
    let (_, mut app) = s.get("/api/v1/applications/capped").await;
    app["max_concurrency"] = json!(2);
    let (status, body) = s.post("/api/v1/applications", app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let j = job(&s, "capped").await;
    assert_eq!(j["trigger"], "manual");
    for want in [StatusCode::ACCEPTED, StatusCode::ACCEPTED, StatusCode::TOO_MANY_REQUESTS] {
        let (status, body) = s.post("/api/v1/applications/capped/trigger", json!({})).await;
        assert_eq!(status, want, "{body}");
    }
}
on_both!(one_instance_for_schedules_many_for_automation);

/// Spec 000 end to end: a job with a masked parameter, scheduled every
/// minute, then triggered as an automated job with Build context; its
/// history, logs, `args` and the grid's texts.
async fn a_spec_000_job_end_to_end(clock: Arc<ManualClock>, s: &TestServer) {
    make_job(s, "deploy-sync").await;
    let (status, _) =
        s.put("/api/v1/global-parameters", json!([{"name": "Org", "value": "acme", "type": "string"}])).await;
    assert_eq!(status, StatusCode::OK);
    add_schedule(s, every_minute("deploy-sync", "2026-11-23T08:01")).await;
    let j = job(s, "deploy-sync").await;
    assert_eq!(j["next_run"], "in a minute", "{j}");
    assert_eq!(j["schedule"], "Every minute from 2026-11-23 08:01 UTC");
    assert!(j["last_run"].is_null());
    advance(&clock, 50);
    assert_eq!(job(s, "deploy-sync").await["next_run"], "in a few seconds");
    advance(&clock, 10);

    let fired = s.engine.fire_due().await.unwrap();
    assert_eq!(fired.started.len(), 1);
    let scheduled = s.engine.wait_run(&fired.started[0], Duration::from_secs(30)).await.unwrap();
    assert_eq!(scheduled.state.as_str(), "SUCCESS", "{scheduled:?}");

    advance(&clock, 20);
    let (status, _) = s.put("/api/v1/settings", json!({"automated_jobs_enabled": true})).await;
    assert_eq!(status, StatusCode::OK);
    let build =
        json!({"Build": {"ID": "b-1", "BuildNumber": "1.2.3", "Branch": "main"}, "System": {"Name": "Payments"}});
    let (status, body) = s
        .post("/api/v1/applications/deploy-sync/trigger", json!({"context": build, "arguments": {"region": "us"}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let triggered = s.engine.wait_run(body["id"].as_str().unwrap(), Duration::from_secs(30)).await.unwrap();
    assert_eq!(triggered.state.as_str(), "SUCCESS", "{triggered:?}");

    // History: newest first, with triggers and log links.
    let history = runs_of(s, "deploy-sync").await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["id"], triggered.id.as_str());
    assert_eq!(history[0]["trigger"], "automated");
    assert_eq!(history[1]["trigger"], "schedule");
    assert_eq!(history[1]["state"], "SUCCESS");
    assert_eq!(history[1]["started_at"], "2026-11-23T08:01:00Z");
    assert!(history[1]["duration_ms"].is_i64());

    // The log link opens without a token (a browser tab); tampered or
    // borrowed for another run, it does not.
    let href = history[0]["log_href"].as_str().unwrap();
    let resp = s.http.get(format!("{}{href}", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let log = resp.text().await.unwrap();
    let other = href.replace(triggered.id.as_str(), &scheduled.id);
    let resp = s.http.get(format!("{}{other}", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "a signature is for one run only");
    let resp = s.http.get(format!("{}/api/v1/tasks/{}/log", s.base, triggered.id)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    for broken in [href.replace("expires=", "expires=x"), href.replace("sig=", "sig=00"), href.replace("&sig=", "&s=")]
    {
        let resp = s.http.get(format!("{}{broken}", s.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{broken}");
    }

    // args as spec 000 describes them.
    let line = log.lines().find(|l| l.contains("[LOG] – args ")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.starts_with('['), "{line}");
    let args: Value = serde_json::from_str(line.split("[LOG] – args ").nth(1).unwrap()).unwrap();
    assert_eq!(args["arguments"]["region"], "us", "overridden value: {args}");
    assert_eq!(args["arguments"]["apiKey"], "********", "masked in the log: {args}");
    assert_eq!(args["plutoraValues"]["Build"]["BuildNumber"], "1.2.3");
    assert_eq!(args["plutoraValues"]["JobName"], "deploy-sync");
    assert_eq!(args["global"]["Org"], "acme");
    assert_eq!(args["lastRunDateUtc"], "2026-11-23T08:01:00.000Z");
    assert_eq!(args["lastSuccessfulRunDateUtc"], "2026-11-23T08:01:00.000Z");
    let first_log = s.text(&format!("/api/v1/tasks/{}/log", scheduled.id)).await;
    assert!(first_log.contains(r#""lastRunDateUtc":null"#), "{first_log}");
    assert!(first_log.contains(r#""region":"eu""#), "{first_log}");
    assert!(first_log.contains(r#""plutoraValues":{}"#), "{first_log}");

    // The grid: last run, next tick.
    let j = job(s, "deploy-sync").await;
    assert_eq!(j["last_run"]["id"], triggered.id.as_str());
    assert_eq!(j["last_run"]["state"], "SUCCESS");
    assert_eq!(j["next_run_at"], "2026-11-23T08:02:00Z");
    assert_eq!(j["next_run"], "in a few seconds", "{j}");
    assert_eq!(j["description"], "the deploy-sync job");

    // A log link lasts an hour.
    advance(&clock, 3601);
    let resp = s.http.get(format!("{}{href}", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "an expired link");
    s.assert_never_sent(SECRET);
}

#[tokio::test]
async fn a_spec_000_job_end_to_end_on_sqlite() {
    let clock = Arc::new(ManualClock::new(t0()));
    let s = TestServer::sqlite_with(Options { clock: clock.clone(), workers: 2 }).await;
    a_spec_000_job_end_to_end(clock, &s).await;
}

#[tokio::test]
async fn a_spec_000_job_end_to_end_on_postgres() {
    let clock = Arc::new(ManualClock::new(t0()));
    let s = TestServer::postgres_with(Options { clock: clock.clone(), workers: 2 }).await;
    a_spec_000_job_end_to_end(clock, &s).await;
}

/// Two servers over one PostgreSQL database fire the same due ticks at the
/// same moment (no election): every tick yields exactly one run.
#[tokio::test]
async fn two_servers_never_fire_one_tick_twice() {
    let (clock, options) = manual();
    let a = TestServer::postgres_with(options.clone()).await;
    let b = a.sibling(options).await;
    for i in 0..20 {
        let name = format!("job{i}");
        make_job(&a, &name).await;
        add_schedule(&a, every_minute(&name, "2026-11-23T08:01")).await;
    }
    for _ in 0..3 {
        advance(&clock, 60);
        let (ra, rb) = tokio::join!(a.engine.fire_due(), b.engine.fire_due());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        // A tick whose run is still going waits; every other one fires once.
        assert_eq!(
            ra.started.len() + rb.started.len(),
            if clock_now(&clock) == "2026-11-23T08:01:00Z".parse().unwrap() { 20 } else { 0 },
            "{ra:?} {rb:?}"
        );
    }
    for i in 0..20 {
        assert_eq!(runs_of(&a, &format!("job{i}")).await.len(), 1, "job{i}");
    }
}

/// One server leads the scheduler; when it stops, another takes over.
#[tokio::test]
async fn the_scheduler_leader_fails_over() {
    let (clock, options) = manual();
    let a = TestServer::postgres_with(options.clone()).await;
    let b = a.sibling(options).await;
    make_job(&a, "ha").await;
    add_schedule(&a, every_minute("ha", "2026-11-23T08:01")).await;
    let config = junction_engine::SchedulerConfig {
        tick: Duration::from_millis(50),
        batch: 64,
        leader_retry: Duration::from_millis(100),
    };
    let (stop_a, rx_a) = tokio::sync::oneshot::channel::<()>();
    let (engine_a, cfg) = (a.engine.clone(), config.clone());
    let leader_a = tokio::spawn(async move {
        engine_a
            .run_scheduler(cfg, async {
                let _ = rx_a.await;
            })
            .await
    });
    // A first run shows that a leads (only the leader fires).
    advance(&clock, 60);
    wait_for_runs(&a, "ha", 1).await;
    assert!(b.engine.store().try_lead().await.unwrap().is_none(), "a leads, so b cannot");
    let (stop_b, rx_b) = tokio::sync::oneshot::channel::<()>();
    let (engine_b, cfg) = (b.engine.clone(), config);
    let leader_b = tokio::spawn(async move {
        engine_b
            .run_scheduler(cfg, async {
                let _ = rx_b.await;
            })
            .await
    });

    stop_a.send(()).unwrap();
    leader_a.await.unwrap();
    // The first run must end before the next tick may start one.
    let first = runs_of(&a, "ha").await[0]["id"].as_str().unwrap().to_string();
    a.engine.revoke_run(&first, "test").await.unwrap();
    advance(&clock, 60);
    wait_for_runs(&a, "ha", 2).await;
    stop_b.send(()).unwrap();
    leader_b.await.unwrap();
    assert_eq!(runs_of(&a, "ha").await.len(), 2);
}

async fn wait_for_runs(s: &TestServer, app: &str, n: usize) {
    for _ in 0..200 {
        if runs_of(s, app).await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{app} never reached {n} runs");
}

#[tokio::test]
async fn jobs_grid_shows_every_trigger_kind() {
    let (clock, options) = manual();
    let s = TestServer::sqlite_with(options).await;
    make_job(&s, "manual-job").await;
    make_job(&s, "auto-job").await;
    let (_, mut app) = s.get("/api/v1/applications/auto-job").await;
    app["automated"] = json!(true);
    let (status, body) = s.post("/api/v1/applications", app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    make_job(&s, "berlin").await;
    add_schedule(&s, json!({"application_id": "berlin", "timezone": "Europe/Berlin",
        "schedule": {"schedule_type": "interval", "schedule_info": {"frequency": "Hourly", "repeat_every": 2, "start_on": "2026-11-23T09:00"}}})).await;
    let (status, jobs) = s.get("/api/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = jobs.as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["auto-job", "berlin", "manual-job"]);
    assert_eq!(jobs[0]["trigger"], "automated");
    assert_eq!(jobs[0]["next_run"], "Disabled");
    assert_eq!(jobs[1]["trigger"], "scheduled");
    assert_eq!(jobs[1]["schedule"], "Every 2 hours from 2026-11-23 09:00 Europe/Berlin");
    // 09:00 in Berlin is 08:00 UTC: now.
    assert_eq!(jobs[1]["next_run_at"], "2026-11-23T08:00:00Z");
    assert_eq!(jobs[1]["enabled"], true);
    assert_eq!(jobs[2]["trigger"], "manual");
    assert!(jobs[2]["next_run"].is_null());
    advance(&clock, 30 * 60);
    assert_eq!(job(&s, "berlin").await["next_run"], "Overdue", "due 30 minutes ago and not fired");
    let r = s.engine.fire_due().await.unwrap();
    assert_eq!(r.started.len(), 1);
    s.engine.revoke_run(&r.started[0], "test").await.unwrap();
    assert_eq!(job(&s, "berlin").await["next_run"], "in 2 hours");
    assert_eq!(job(&s, "berlin").await["next_run_at"], "2026-11-23T10:00:00Z");

    let (status, _) = s.post("/api/v1/jobs/nope/stop", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = s.patch("/api/v1/jobs/manual-job", json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = s.patch("/api/v1/jobs/berlin", json!({"enabled": "no"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Deleting the application deletes its schedules.
    let (status, _) = s.delete("/api/v1/applications/berlin").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = s.get("/api/v1/schedule").await;
    assert_eq!(list, json!([]));
    let _ = ADMIN;
}

/// A daily 02:30 job fires once per local day at 02:30 wall-clock time
/// across daylight saving changes, forward and back, in two time zones —
/// driven through the firing loop minute by minute with a manual clock.
#[tokio::test]
async fn a_daily_job_fires_once_a_day_across_dst() {
    let (clock, options) = manual();
    let s = TestServer::sqlite_with(options).await;
    make_job(&s, "daily").await;
    // (zone, window start (UTC), the fires expected in the window (UTC))
    let windows = [
        (
            "America/New_York",
            "2026-03-06T12:00:00Z",
            ["2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"],
        ),
        (
            "Europe/Berlin",
            "2026-03-27T12:00:00Z",
            ["2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
        ),
        (
            "Europe/Berlin",
            "2026-10-23T12:00:00Z",
            ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
        (
            "America/New_York",
            "2026-10-30T12:00:00Z",
            ["2026-10-31T06:30:00Z", "2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"],
        ),
    ];
    for (zone, start, want) in windows {
        clock.set(start.parse().unwrap());
        let sched = add_schedule(&s, json!({"application_id": "daily", "timezone": zone, "schedule": {
            "schedule_type": "interval", "schedule_info": {"frequency": "Daily", "repeat_every": 1, "start_on": "2026-01-01T02:30"}}}))
        .await;
        let mut fired = Vec::new();
        // Three days in steps of 5 minutes.
        for _ in 0..(3 * 24 * 12) {
            advance(&clock, 300);
            let report = s.engine.fire_due().await.unwrap();
            for run in &report.started {
                fired.push(s.engine.store().get_run(run).await.unwrap().unwrap().created_at.to_string());
                s.engine.revoke_run(run, "test").await.unwrap();
            }
        }
        assert_eq!(fired, want, "{zone} from {start}");
        let (status, _) = s.delete(&format!("/api/v1/schedule/{}", sched["id"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}

/// `run_every` counts from the schedule's creation: one tick per period.
#[tokio::test]
async fn a_frequency_schedule_counts_from_its_creation() {
    let (clock, options) = manual();
    let s = TestServer::sqlite_with(options).await;
    make_job(&s, "poll").await;
    advance(&clock, 7);
    let sched = add_schedule(
        &s,
        json!({"application_id": "poll",
        "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 90}}}),
    )
    .await;
    assert_eq!(sched["next_fire_at"], "2026-11-23T08:01:37Z");
    assert_eq!(sched["created_at"], "2026-11-23T08:00:07Z");
    assert_eq!(sched["description"], "Every 90 seconds");
    let mut fired = 0;
    for _ in 0..(6 * 60) {
        advance(&clock, 1);
        fired += fire(&s).await;
    }
    // 08:01:37, 08:03:07, 08:04:37, 08:06:07 — four in six minutes.
    assert_eq!(fired, 4);
    let (_, got) = s.get(&format!("/api/v1/schedule/{}", sched["id"].as_str().unwrap())).await;
    assert_eq!(got["next_fire_at"], "2026-11-23T08:07:37Z");
}

/// A schedule read back (one or the listing) posts back unchanged: every
/// key the server adds (`last_run_id`, `next_fire_at`, `last_error`,
/// `created_at` ...) is accepted and ignored, and nothing changes.
#[tokio::test]
async fn a_schedule_read_back_posts_back_unchanged() {
    let (clock, options) = manual();
    let s = TestServer::sqlite_with(options).await;
    make_job(&s, "sync").await;
    let sched = add_schedule(&s, every_minute("sync", "2026-11-23T08:01")).await;
    let id = sched["id"].as_str().unwrap().to_string();
    advance(&clock, 60);
    assert_eq!(fire(&s).await, 1);
    let (status, shown) = s.get(&format!("/api/v1/schedule/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(shown["last_run_id"].is_string() && shown["last_fire_at"].is_string(), "{shown}");
    let (_, list) = s.get("/api/v1/schedule").await;
    assert_eq!(list[0], shown);
    advance(&clock, 5);
    for body in [shown.clone(), list[0].clone()] {
        let (status, answer) = s.post("/api/v1/schedule", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body} -> {answer}");
        let (_, now) = s.get(&format!("/api/v1/schedule/{id}")).await;
        assert_eq!(answer, now);
        // Everything as it was; only the time of the save is new.
        let mut before = shown.clone();
        before["updated_at"] = now["updated_at"].clone();
        assert_eq!(now, before);
        assert_ne!(now["updated_at"], shown["updated_at"]);
    }
    assert_eq!(fire(&s).await, 0, "re-posting fired nothing");
    let (_, list) = s.get("/api/v1/schedule").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "still one schedule");
}

/// Numbers out of range name the bound they break, however far out they
/// are: `1e300` is too large, not "at least 1".
#[tokio::test]
async fn out_of_range_schedule_numbers_say_too_small_or_too_large() {
    let s = TestServer::sqlite().await;
    make_job(&s, "job").await;
    let frequency = |n: Value| json!({"application_id": "job", "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": n}}});
    let interval = |n: Value| json!({"application_id": "job", "schedule": {"schedule_type": "interval", "schedule_info": {"frequency": "Daily", "repeat_every": n, "start_on": "2026-11-23T09:00"}}});
    let cases = [
        (frequency(json!(1e300)), "run_every", "too_large", "must be at most 3153600000"),
        (frequency(json!(u64::MAX)), "run_every", "too_large", "must be at most 3153600000"),
        (frequency(json!(i64::MAX)), "run_every", "too_large", "must be at most 3153600000"),
        (frequency(json!(-1e300)), "run_every", "too_small", "must be at least 1"),
        (frequency(json!(0)), "run_every", "too_small", "must be at least 1"),
        (interval(json!(1e300)), "repeat_every", "too_large", "must be at most 10000"),
        (interval(json!(10_001)), "repeat_every", "too_large", "must be at most 10000"),
        (interval(json!(0)), "repeat_every", "too_small", "must be at least 1"),
    ];
    for (body, field, rule, message) in cases {
        let (status, answer) = s.post("/api/v1/schedule", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        let detail = &answer["error"]["details"][0];
        assert_eq!(
            (detail["field"].as_str(), detail["rule"].as_str(), detail["message"].as_str()),
            (Some(format!("schedule.schedule_info.{field}").as_str()), Some(rule), Some(message)),
            "{body} -> {answer}"
        );
    }
}
