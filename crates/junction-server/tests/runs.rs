//! Applications running end to end through the HTTP API: the real server,
//! a real worker, real Node.js and Python.

mod common;

use std::time::Duration;

use common::{details, on_both, TestServer, ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PY_FIRST: &str = r#"
from ipaascore.BaseStep import BaseStep


class First(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="host", description="", sample_value="", default_value=None, required=True)
        self.new_step_parameter(name="who", description="", sample_value="", default_value=None, required=True)

    def execute(self):
        self.logger.info("host is " + self.get_parameter("host"))
        self.save_data_for_next_step({"items": [1, 2], "who": self.get_parameter("who")})
"#;

const JS_MIDDLE: &str = r#"module.exports = { run: async (args) => {
    console.log('middle for', args.arguments.region, 'global', args.globalArguments.Org, args.arguments.greeting, args.arguments.items);
    return 'middle done';
} };"#;

const PY_LEFT: &str = r#"
from ipaascore.BaseStep import BaseStep


class Left(BaseStep):
    def add_numbers(self, a, b):
        return int(a) + int(b)

    def __init__(self):
        self.new_step_parameter(name="sum", description="", sample_value="", default_value=None, required=True)
        self.new_step_parameter(name="who", description="", sample_value="", default_value=None, required=True)

    def execute(self):
        first = self.get_data_from_step_by_name("first")
        self.save_data_for_next_step({"left": first["items"] + [self.get_parameter("sum")], "who": self.get_parameter("who")})
"#;

const PY_JOIN: &str = r#"
from ipaascore.BaseStep import BaseStep


class Join(BaseStep):
    def execute(self):
        by_order = self.get_data_from_step_by_order(1)
        self.save_data_for_next_step({"joined": self.join_previous_step_data(), "first_input": by_order,
                                      "secret_len": len(self.get_app_variable("token"))})
"#;

async fn upload(s: &TestServer, name: &str, data: &str) {
    let (status, body) = s.post("/api/v1/steps", json!({"name": name, "data": data})).await;
    assert_eq!(status, StatusCode::OK, "{name}: {body}");
}

/// first -> (left, middle) -> join: a diamond with parallel middle steps,
/// JavaScript and Python mixed, data passed by name, order and join, and
/// every substitution form.
async fn diamond(s: &TestServer) {
    upload(s, "First", PY_FIRST).await;
    upload(s, "middle", JS_MIDDLE).await;
    upload(s, "Left", PY_LEFT).await;
    upload(s, "Join", PY_JOIN).await;
    s.post(
        "/api/v1/configurations",
        json!({"name": "conn", "configuration_data": [
        {"name": "host", "value": "10.0.0.5"}, {"name": "pw", "value": "CONF-SECRET-9", "encrypted": true}]}),
    )
    .await;
    s.put("/api/v1/global-parameters", json!([{"name": "Org", "type": "string", "value": "ACME"}])).await;
    let (status, body) = s
        .post("/api/v1/applications", json!({
            "name": "diamond", "configuration": "conn",
            "app_variables": [
                {"name": "region", "value": "eu"},
                {"name": "who", "required": true},
                {"name": "token", "value": "APP-SECRET-7", "encrypted": true}
            ],
            "steps": [
                {"name": "first", "file": "First", "host": "${config.host}", "who": "${appvar.who}", "output_to": ["left", "middle"]},
                {"name": "left", "file": "Left", "sum": "${stepfunc.add_numbers 2 3}", "who": "${who}", "output_to": ["join"]},
                {"name": "middle", "file": "middle", "greeting": "hi ${appvar.who}@${config.host}", "items": "${items}", "output_to": ["join"]},
                {"name": "join", "file": "Join"}
            ]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = s.post("/api/v1/applications/diamond/run", json!({"params": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "who is required: {body}");
    assert_eq!(details(&body), vec![("params.who".to_string(), "required".to_string())]);

    let (status, run) = s.post("/api/v1/applications/diamond/run?wait=30", json!({"params": {"who": "ops"}})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.iter().map(|s| s["state"].as_str().unwrap()).collect::<Vec<_>>(), ["SUCCESS"; 4]);
    assert_eq!(run["app_vars"]["who"], "ops");
    let join_id = steps[3]["id"].as_str().unwrap();
    let (_, join) = s.get(&format!("/api/v1/tasks/{join_id}")).await;
    assert_eq!(join["data"]["first_input"], json!({"left": [1, 2, 5], "who": "ops"}), "{join}");
    assert_eq!(
        join["data"]["joined"],
        json!({"left": [1, 2, 5], "who": "ops"}),
        "the JS step saved nothing; the dicts merge"
    );
    assert_eq!(join["data"]["secret_len"], 12, "the encrypted variable reached the step");
    let (_, first) = s.get(&format!("/api/v1/tasks/{}", steps[0]["id"].as_str().unwrap())).await;
    assert!(first["log"][0].as_str().unwrap().ends_with("First: host is 10.0.0.5"), "{first}");
    let resp = s
        .http
        .get(format!("{}/api/v1/tasks/{}/log", s.base, run["id"].as_str().unwrap()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let text = resp.text().await.unwrap();
    assert!(text.contains("middle for eu global ACME hi ops@10.0.0.5 [ 1, 2 ]"), "{text}");
    s.assert_never_sent("APP-SECRET-7");
    s.assert_never_sent("CONF-SECRET-9");
}

on_both!(
    diamond => a_diamond_of_mixed_steps_runs_with_data_and_substitutions_on_sqlite,
    a_diamond_of_mixed_steps_runs_with_data_and_substitutions_on_postgres
);

/// A loopback HTTP server that answers 500 to the first `fail` requests,
/// then 200; it counts requests.
async fn flaky_server(fail: usize) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let status = if n < fail { "500 Internal Server Error" } else { "200 OK" };
                let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn failed_attempts_are_retried_with_backoff() {
    let s = TestServer::sqlite().await;
    let (url, count) = flaky_server(2).await;
    upload(&s, "flaky", "const http = require('http'); module.exports = { run: (args) => new Promise((ok, fail) => {\n  http.get(args.arguments.url, (res) => res.statusCode === 200 ? ok('reached') : fail('status ' + res.statusCode)).on('error', fail);\n}) };").await;
    s.post(
        "/api/v1/applications",
        json!({"name": "retrying", "app_variables": [{"name": "url", "value": url}],
        "steps": [{"name": "call", "file": "flaky", "retry_max": 3, "retry_backoff": true}]}),
    )
    .await;
    let started = std::time::Instant::now();
    let (status, run) = s.post("/api/v1/applications/retrying/run?wait=30", json!({})).await;
    assert_eq!((status, run["state"].as_str()), (StatusCode::OK, Some("SUCCESS")), "{run}");
    assert!(started.elapsed() >= Duration::from_secs(3), "waited 1 s then 2 s");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(run["steps"][0]["attempts"], 3);
    let log = s.text(&format!("/api/v1/tasks/{}/log", run["id"].as_str().unwrap())).await;
    assert!(log.contains("attempt 1 failed: status 500; retry 1 of 3 in 1 s"), "{log}");
    assert!(log.contains("attempt 2 failed: status 500; retry 2 of 3 in 2 s"), "{log}");
}

#[tokio::test]
async fn a_failed_step_fails_the_run_and_its_dependants_do_not_run() {
    let s = TestServer::sqlite().await;
    upload(&s, "boom", "module.exports = { run: async () => { throw new Error('exploded'); } };").await;
    upload(&s, "after", "module.exports = { run: async () => 'never' };").await;
    s.post(
        "/api/v1/applications",
        json!({"name": "failing", "steps": [
        {"name": "a", "file": "boom", "output_to": ["b"]}, {"name": "b", "file": "after"}]}),
    )
    .await;
    let (status, run) = s.post("/api/v1/applications/failing/run?wait=30", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["state"], "FAILURE");
    assert_eq!(run["steps"][0]["state"], "FAILURE");
    assert_eq!(run["steps"][0]["result"], "exploded");
    assert_eq!(run["steps"][1]["state"], "REVOKED");
    assert_eq!(run["steps"][1]["result"], "not run: an input step failed");
}

#[tokio::test]
async fn a_long_step_is_revoked_and_a_run_is_replayed() {
    let s = TestServer::sqlite().await;
    upload(
        &s,
        "sleeper",
        "module.exports = { run: () => new Promise(() => { setInterval(() => console.log('working'), 50); }) };",
    )
    .await;
    s.post(
        "/api/v1/applications",
        json!({"name": "long", "app_variables": [{"name": "k", "value": "v"}],
        "steps": [{"name": "sleep", "file": "sleeper"}]}),
    )
    .await;
    let (status, run) = s.post("/api/v1/applications/long/run", json!({"params": {"k": "given"}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = run["id"].as_str().unwrap().to_string();
    // Revoked once the step is executing (its first line is in the log).
    let mut started = false;
    for _ in 0..400 {
        if s.text(&format!("/api/v1/tasks/{id}/log")).await.contains("working") {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started, "the step never started");
    let (status, revoked) = s.post(&format!("/api/v1/tasks/{id}/revoke"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "REVOKED");
    assert_eq!(revoked["steps"][0]["state"], "REVOKED");
    let mut log = String::new();
    for _ in 0..50 {
        log = s.text(&format!("/api/v1/tasks/{id}/log")).await;
        if log.contains("stopped by user") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log.contains("working"), "{log}");
    assert!(log.trim_end().ends_with("Job was stopped by user"), "{log}");
    let (status, _) = s.post(&format!("/api/v1/tasks/{id}/revoke"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a finished run cannot be revoked");

    let (status, replayed) = s.post(&format!("/api/v1/tasks/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    assert_ne!(replayed["id"], run["id"]);
    assert_eq!(replayed["app_vars"]["k"], "given", "same variables");
    s.post(&format!("/api/v1/tasks/{}/revoke", replayed["id"].as_str().unwrap()), json!({})).await;
    s.delete("/api/v1/applications/long").await;
    let (status, body) = s.post(&format!("/api/v1/tasks/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("was deleted"));
}

#[tokio::test]
async fn run_requests_are_checked_and_idempotency_keys_reuse_runs() {
    let s = TestServer::sqlite().await;
    let (status, _) = s.post("/api/v1/applications/nope/run", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    upload(&s, "quick", "module.exports = { run: async () => 'ok' };").await;
    s.post("/api/v1/applications", json!({"name": "quick", "steps": [{"name": "q", "file": "quick"}]})).await;
    let (status, body) = s.post("/api/v1/applications/quick/run", json!({"queue": "../x", "log_level": 99})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        details(&body),
        vec![("log_level".to_string(), "range".to_string()), ("queue".to_string(), "name_syntax".to_string())]
    );
    let (status, body) = s
        .post(
            "/api/v1/applications",
            json!({"name": "opt", "app_variables": [{"name": "queue"}], "steps": [{"name": "q", "file": "quick"}]}),
        )
        .await;
    assert_eq!(
        (status, details(&body)),
        (StatusCode::BAD_REQUEST, vec![("app_variables[0].name".to_string(), "reserved".to_string())])
    );
    let (status, body) = s.post("/api/v1/applications/quick/run?wait=soon", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("validation_failed")),
        "{body}"
    );
    let (status, body) = s.post("/api/v1/applications/quick/run?wait=99", json!({})).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, vec![("wait".to_string(), "range".to_string())]));
    let (status, body) = s.post("/api/v1/applications/run", json!({"params": {}})).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, vec![("name".to_string(), "required".to_string())]));
    let (status, run) = s.post("/api/v1/applications/run?wait=30", json!({"name": "quick", "params": {}})).await;
    assert_eq!((status, run["state"].as_str()), (StatusCode::OK, Some("SUCCESS")), "{run}");
    assert_eq!(run["steps"][0]["result"], "ok");
    let send = || {
        s.http
            .post(format!("{}/api/v1/applications/quick/run", s.base))
            .bearer_auth(ADMIN)
            .header("Idempotency-Key", "once-only")
            .send()
    };
    let a: Value = send().await.unwrap().json().await.unwrap();
    let b: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    let (_, runs) = s.get("/api/v1/applications/quick/runs?limit=10").await;
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    let (status, last) = s.get("/api/v1/applications/quick/logs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(last["id"], runs[0]["id"]);
    let (status, _) = s.send(Method::GET, "/api/v1/tasks/no-such-task", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_lone_step_runs_with_its_parameters() {
    let s = TestServer::sqlite().await;
    upload(&s, "Greeter", "from ipaascore.BaseStep import BaseStep\n\nclass Greeter(BaseStep):\n    def __init__(self):\n        self.new_step_parameter(name='who', description='', sample_value='', default_value=None, required=True)\n\n    def execute(self):\n        self.logger.info('hello ' + self.get_parameter('who'))\n        self.save_data_for_next_step({'greeted': self.get_parameter('who')})\n").await;
    upload(&s, "jsgreet", "module.exports = { run: async (args) => 'hi ' + args.arguments.who };").await;
    let (status, body) = s.post("/api/v1/steps/run", json!({"name": "Greeter"})).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, vec![("who".to_string(), "required".to_string())]));
    let (status, body) = s.post("/api/v1/steps/run", json!({"name": "nope"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = s.post("/api/v1/steps/run?wait=30", json!({"name": "Greeter", "who": "world"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "SUCCESS");
    assert_eq!(body["output"], json!({"greeted": "world"}));
    assert!(body["logs"][0].as_str().unwrap().ends_with("Greeter: hello world"), "{body}");
    let (status, body) = s.post("/api/v1/steps/run", json!({"name": "jsgreet", "who": "js"})).await;
    assert_eq!((status, body["result"].as_str()), (StatusCode::OK, Some("hi js")), "{body}");
    let (_, apps) = s.get("/api/v1/applications").await;
    assert_eq!(apps, json!([]), "lone step runs create no visible application");
}

/// The configuration password the steps below pass along: with a quote and
/// a backslash, so its JSON-escaped form differs from its clear one.
const SAVED_PW: &str = r#"Pa"ss\word-SAVED-4f2c"#;

const PY_SENDS: &str = r#"
from ipaascore.BaseStep import BaseStep


class Sends(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="pw", description="", sample_value="", default_value=None, required=True)

    def execute(self):
        pw = self.get_parameter("pw")
        self.logger.info("saving the password")
        self.save_data_for_next_step({"password": pw, "nested": [{"note": "pw=" + pw + ";"}], pw: "as a key",
                                      "plain": "kept", "n": 7})
"#;

const PY_CHECKS: &str = r#"
from ipaascore.BaseStep import BaseStep


class Checks(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="pw", description="", sample_value="", default_value=None, required=True)

    def execute(self):
        got = self.get_data_from_step_by_name("send")
        pw = self.get_parameter("pw")
        self.save_data_for_next_step({"same": got["password"] == pw, "key_same": got.get(pw) == "as a key",
                                      "nested_same": got["nested"][0]["note"] == "pw=" + pw + ";",
                                      "plain": got["plain"]})
"#;

/// `${password}` is the previous step's saved data, substituted by the
/// engine: it must be the real value.
const JS_CHECKS: &str = r#"module.exports = { run: async (args) =>
    'same=' + (args.arguments.from_data === args.arguments.from_config) };"#;

/// A step saves a configuration password for the next steps: every API
/// answer shows the saved data masked, the database holds it sealed only,
/// and the next steps (Python by name, JavaScript by `${key}`) still get
/// the real value.
async fn saved_data_with_a_secret(s: &mut TestServer) {
    upload(s, "Sends", PY_SENDS).await;
    upload(s, "Checks", PY_CHECKS).await;
    upload(s, "jschecks", JS_CHECKS).await;
    let (status, body) = s
        .post(
            "/api/v1/configurations",
            json!({"name": "vault", "configuration_data": [{"name": "pw", "value": SAVED_PW, "encrypted": true}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/applications",
            json!({
            "name": "passes-pw", "configuration": "vault",
            "steps": [
                {"name": "send", "file": "Sends", "pw": "${config.pw}", "output_to": ["check", "jscheck"]},
                {"name": "check", "file": "Checks", "pw": "${config.pw}"},
                {"name": "jscheck", "file": "jschecks", "from_data": "${password}", "from_config": "${config.pw}"}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, run) = s.post("/api/v1/applications/passes-pw/run?wait=30", json!({})).await;
    assert_eq!((status, run["state"].as_str()), (StatusCode::OK, Some("SUCCESS")), "{run}");
    let viewer = s.token("viewer").await;
    let task = |i: usize| format!("/api/v1/tasks/{}", run["steps"][i]["id"].as_str().unwrap());
    let (status, send) = s.send(Method::GET, &task(0), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{send}");
    assert_eq!(
        send["data"],
        json!({"password": "********", "nested": [{"note": "pw=********;"}], "********": "as a key",
               "plain": "kept", "n": 7}),
        "the saved data is shown masked"
    );
    let (_, check) = s.send(Method::GET, &task(1), Some(&viewer), None).await;
    assert_eq!(
        check["data"],
        json!({"same": true, "key_same": true, "nested_same": true, "plain": "kept"}),
        "the next step got the real value"
    );
    let (_, jscheck) = s.send(Method::GET, &task(2), Some(&viewer), None).await;
    assert_eq!(jscheck["result"], "same=true", "${{password}} was the real value: {jscheck}");
    for path in [format!("/api/v1/tasks/{}", run["id"].as_str().unwrap()), task(0)] {
        assert_eq!(s.get(&path).await.0, StatusCode::OK);
        let (status, log) = s.text_with_status(&format!("{path}/log")).await;
        assert_eq!(status, StatusCode::OK, "{path}/log: {log}");
        assert!(!log.is_empty(), "{path}/log is not empty");
    }
    for path in ["/api/v1/applications/passes-pw/logs", "/api/v1/applications/passes-pw/runs"] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }

    // A replay runs with the same data passed along.
    let (status, replayed) = s.post(&format!("/api/v1/tasks/{}/replay", run["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    let replayed = s.engine.wait_run(replayed["id"].as_str().unwrap(), Duration::from_secs(30)).await.unwrap();
    let (_, replayed) = s.get(&format!("/api/v1/tasks/{}", replayed.id)).await;
    assert_eq!(replayed["state"], "SUCCESS", "{replayed}");
    let (_, check) = s.get(&format!("/api/v1/tasks/{}", replayed["steps"][1]["id"].as_str().unwrap())).await;
    assert_eq!(check["data"]["same"], true, "{check}");

    let escaped = serde_json::to_string(SAVED_PW).unwrap();
    for needle in ["word-SAVED-4f2c", SAVED_PW, escaped.trim_matches('"')] {
        s.assert_never_sent(needle);
    }
    s.stop().await;
    s.assert_not_in_database_files(&["word-SAVED-4f2c"]);
}

on_both!(
    &mut saved_data_with_a_secret => saved_step_data_with_a_secret_is_masked_and_sealed_on_sqlite,
    saved_step_data_with_a_secret_is_masked_and_sealed_on_postgres
);

/// A variable's clear values given while it was plain, in a run, a
/// schedule and a trigger.
const WAS_PLAIN: [&str; 3] = ["RUN-PARAM-WAS-PLAIN-61", "SCHEDULE-PARAM-WAS-PLAIN-62", "TRIGGER-ARG-WAS-PLAIN-63"];

/// A variable made encrypted after runs, a schedule and a trigger were
/// given clear values for it: none of them shows (or keeps) the clear
/// value any more; the old run shows it masked and replays with it.
async fn made_encrypted_later(s: &mut TestServer) {
    upload(s, "echo", "module.exports = { run: async (args) => 'pw length ' + args.arguments.pw.length };").await;
    let app = |pw: Value| {
        json!({"name": "later", "app_variables": [pw, {"name": "region", "value": "eu"}],
               "steps": [{"name": "e", "file": "echo"}]})
    };
    let (status, body) = s.post("/api/v1/applications", app(json!({"name": "pw", "value": "plain-default"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, run) = s.post("/api/v1/applications/later/run?wait=30", json!({"params": {"pw": WAS_PLAIN[0]}})).await;
    assert_eq!((status, run["state"].as_str()), (StatusCode::OK, Some("SUCCESS")), "{run}");
    let entry = json!({"id": "later-hourly", "application_id": "later", "params": {"pw": WAS_PLAIN[1], "region": "us"},
        "schedule": {"schedule_type": "cron", "schedule_info": {"expression": "0 * * * *"}}});
    let (status, body) = s.post("/api/v1/schedule", entry).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let trigger = json!({"name": "later-on-deploy", "application": "later", "event": "cicd_job",
        "arguments": {"pw": WAS_PLAIN[2], "region": "us"}});
    let (status, body) = s.post("/api/v1/triggers", trigger).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) =
        s.post("/api/v1/applications", app(json!({"name": "pw", "value": "now-sealed", "encrypted": true}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.seen.lock().unwrap().clear();
    let viewer = s.token("viewer").await;
    let id = run["id"].as_str().unwrap();
    let (status, old) = s.send(Method::GET, &format!("/api/v1/tasks/{id}"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{old}");
    assert_eq!(old["app_vars"], json!({"pw": "********", "region": "eu"}), "the old run shows the value masked");
    let (_, schedules) = s.send(Method::GET, "/api/v1/schedule", Some(&viewer), None).await;
    assert_eq!(schedules[0]["params"], json!({"region": "us"}), "{schedules}");
    let (_, trigger) = s.send(Method::GET, "/api/v1/triggers/later-on-deploy", Some(&viewer), None).await;
    assert_eq!(trigger["arguments"], json!({"region": "us"}), "{trigger}");
    for path in ["/api/v1/applications/later/runs", "/api/v1/jobs/later/history"] {
        let (status, body) = s.send(Method::GET, path, Some(&viewer), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // The old run's value was moved, not lost: a replay runs with it.
    let (status, replayed) = s.post(&format!("/api/v1/tasks/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    let replayed = s.engine.wait_run(replayed["id"].as_str().unwrap(), Duration::from_secs(30)).await.unwrap();
    let (_, replayed) = s.get(&format!("/api/v1/tasks/{}", replayed.id)).await;
    assert_eq!(replayed["state"], "SUCCESS", "{replayed}");
    assert_eq!(replayed["steps"][0]["result"], format!("pw length {}", WAS_PLAIN[0].len()), "{replayed}");
    for needle in WAS_PLAIN {
        s.assert_never_sent(needle);
    }
    s.stop().await;
    s.assert_not_in_database_files(&WAS_PLAIN);
}

on_both!(
    &mut made_encrypted_later => a_variable_made_encrypted_later_is_masked_in_old_runs_schedules_and_triggers_on_sqlite,
    a_variable_made_encrypted_later_is_masked_in_old_runs_schedules_and_triggers_on_postgres
);
