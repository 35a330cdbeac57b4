//! The Node.js runtime against real node: spec 000's contract, spec 001's
//! hooks, limits, stop, warm reuse and the supported modules.

mod common;

use std::time::Duration;

use common::{http_server, lines, texts, Harness};
use junction_core::step::Language;
use junction_runtime::{Event, Execution, Limits, Script, Status};
use serde_json::{json, Value};

fn js(name: &str, source: &str, args: Value) -> Execution {
    Execution::new(Script::new(name, Language::Javascript, source), json!({ "args": args }))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/spec000/{name}.js", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The automated-job context of spec 000 with every field its examples read.
fn plutora_values() -> Value {
    let release = json!({"ID": "r-1", "Identifier": "R1", "Name": "Release 1"});
    let build = json!({"ID": "b-1", "BuildNumber": "42", "BuildTag": "v42", "Branch": "main",
                       "Release": release, "Changes": [{"ID": "c-1", "Name": "Change 1"}]});
    json!({
        "JobName": "Deploy job",
        "Build": build,
        "Tecr": {"ID": "t-1", "Title": "TECR", "Release": {"ID": "r-1", "Name": "Release 1"},
                 "Statuses": [{"ID": "s-1", "Value": "Approved"}]},
        "DeploymentPlan": {"ID": "dp-1", "Name": "Plan"},
        "DeploymentPlanActivity": {"ID": "dpa-1", "Name": "Activity"},
        "System": {"ID": "sys-1", "Name": "System"},
        "Environment": {"ID": "env-1", "Name": "Prod"}
    })
}

#[tokio::test]
async fn every_spec_000_example_runs_unchanged() {
    let h = Harness::new().await;
    let args = json!({
        "arguments": {"jobParamter1": "p1", "jobSecret1": "s1"},
        "globalArguments": {"globalParameter1": "g1", "globalSecret1": "gs1"},
        "plutoraValues": plutora_values(),
        "lastRunDateUtc": "2026-11-24T10:00:00Z",
        "lastSuccessfulRunDateUtc": "2026-11-24T10:00:00Z"
    });
    for name in ["global_parameters", "job_parameters", "job_name", "build", "tecr", "deployment_plan_activity"] {
        let (outcome, events) = h.run(&js(name, &fixture(name), args.clone())).await;
        assert_eq!(outcome.status, Status::Succeeded, "{name}: {outcome:?}");
        assert_eq!(outcome.message, "Done", "{name}");
        assert_eq!(texts(&events), pairs(&[("LOG", "Starting script"), ("LOG", "Ending script")]), "{name}");
    }
}

#[tokio::test]
async fn log_lines_follow_spec_000_format_for_every_console_method() {
    let h = Harness::new().await;
    let src = r#"module.exports = { run: async (args) => {
        console.log('Logging at interval: %d', 1);
        console.info('info', {a: 1});
        console.warn('warn');
        console.error(new Error('bad').message);
        console.dir({deep: {list: [1, 2]}});
        console.trace('here');
        notifier.progress('half way');
        process.stdout.write('raw write\n');
        return 'finished';
    } };"#;
    let (outcome, events) = h.run(&js("fmt", src, json!({}))).await;
    assert_eq!((outcome.status, outcome.message.as_str()), (Status::Succeeded, "finished"));
    let all = lines(&events);
    let first = &all[0];
    // [2018-07-10T02:46:01.798Z] [LOG] – Logging at interval: 1
    assert_eq!(first.len(), "[2018-07-10T02:46:01.798Z] [LOG] – Logging at interval: 1".len(), "{first}");
    assert!(first.starts_with('[') && first[1..25].ends_with('Z') && &first[25..33] == "] [LOG] ", "{first}");
    assert!(first.ends_with(" \u{2013} Logging at interval: 1"), "{first}");
    let got = texts(&events);
    assert_eq!(got[1], ("INFO".into(), "info { a: 1 }".into()));
    assert_eq!(got[2], ("WARN".into(), "warn".into()));
    assert_eq!(got[3], ("ERROR".into(), "bad".into()));
    assert_eq!(got[4], ("DIR".into(), "{ deep: { list: [ 1, 2 ] } }".into()));
    assert_eq!(got[5].0, "TRACE");
    assert!(got[5].1.starts_with("Trace: here\n"), "{}", got[5].1);
    assert_eq!(got[6], ("LOG".into(), "raw write".into()));
    assert!(events.contains(&Event::Progress { message: "half way".into() }));
}

#[tokio::test]
async fn failures_end_with_a_clear_message_in_the_log() {
    let h = Harness::new().await;
    let cases = [
        ("module.exports = { run: () => Promise.reject('this is the fail message') };", "this is the fail message"),
        ("module.exports = { run: async () => { throw new Error('boom'); } };", "boom"),
        ("module.exports = { run: () => { throw new TypeError('sync throw'); } };", "sync throw"),
        ("module.exports = { run: () => Promise.reject({code: 7}) };", r#"{"code":7}"#),
        ("module.exports = { notRun: async () => 1 };", "the script does not export a function named 'run'"),
        ("module.exports = { run: () => 'not a promise' };", "run must return a promise; it returned string"),
        ("module.exports = { run: ( };", "the script does not load: SyntaxError: Unexpected token '}'"),
        (
            "const cp = require('child_process'); module.exports = { run: async () => 1 };",
            "module 'child_process' is not supported",
        ),
        ("module.exports = { run: async () => require('vm') };", "module 'vm' is not supported"),
        ("module.exports = { run: async () => require('./local') };", "module './local' is not supported"),
    ];
    for (src, expect) in cases {
        let (outcome, events) = h.run(&js("failing", src, json!({}))).await;
        assert_eq!(outcome.status, Status::Failed, "{src}: {outcome:?}");
        let error = outcome.error.clone().unwrap_or_default();
        assert!(error.contains(expect), "{src}: error {error:?} should contain {expect:?}");
        let last = texts(&events).pop().expect("a log line");
        assert_eq!(last.0, "ERROR", "{src}");
        assert!(last.1.contains(expect), "{src}: last log line {last:?}");
    }
}

#[tokio::test]
async fn a_promise_that_never_settles_hits_the_time_limit() {
    let h = Harness::new().await;
    let mut exec = js("wrapper", &fixture("wrapper"), json!({}));
    exec.limits = Limits { wall_time: Duration::from_millis(700), ..Limits::default() };
    let (outcome, events) = h.run(&exec).await;
    assert_eq!(outcome.status, Status::TimedOut);
    assert!(outcome.duration >= Duration::from_millis(700));
    let last = texts(&events).pop().unwrap();
    assert_eq!(last.0, "ERROR");
    assert!(last.1.contains("time limit of 0.7 s exceeded"), "{last:?}");
}

#[tokio::test]
async fn stop_ends_the_process_group_and_logs_it_last() {
    let h = Harness::new().await;
    let src = "module.exports = { run: () => new Promise(() => { setInterval(() => console.log('tick'), 20); }) };";
    let exec = js("ticker", src, json!({}));
    let mut events = Vec::new();
    let outcome = h
        .runtime
        .execute(&exec, &mut |e| events.push(e), tokio::time::sleep(Duration::from_millis(400)))
        .await
        .unwrap();
    assert_eq!(outcome.status, Status::Stopped);
    let got = texts(&events);
    assert!(got.iter().filter(|(_, t)| t == "tick").count() >= 3, "{got:?}");
    assert_eq!(got.last().unwrap(), &("ERROR".to_string(), "Job was stopped by user".to_string()));
}

#[tokio::test]
async fn warm_processes_keep_module_state_for_one_script_only() {
    let h = Harness::new().await;
    let counter = "let n = 0; module.exports = { run: async () => String(++n) };";
    let (first, _) = h.run(&js("counter", counter, json!({}))).await;
    let (second, _) = h.run(&js("counter", counter, json!({}))).await;
    assert_eq!((first.message.as_str(), first.warm), ("1", false));
    assert_eq!((second.message.as_str(), second.warm), ("2", true), "same version: warm, state kept");
    let other = "let n = 100; module.exports = { run: async () => String(++n) };";
    let (third, _) = h.run(&js("counter", other, json!({}))).await;
    assert_eq!((third.message.as_str(), third.warm), ("101", false), "another version never shares a process");
    let mut fresh = js("counter", counter, json!({}));
    fresh.fresh = true;
    let (fourth, _) = h.run(&fresh).await;
    assert_eq!((fourth.message.as_str(), fourth.warm), ("1", false), "fresh: a new process");
}

#[tokio::test]
async fn a_failed_execution_is_not_reused() {
    let h = Harness::new().await;
    let src = "let n = 0; module.exports = { run: async (a) => { n++; if (a.fail) throw new Error('n=' + n); return String(n); } };";
    let (failed, _) = h.run(&js("flaky", src, json!({"fail": true}))).await;
    assert_eq!(failed.status, Status::Failed);
    let (next, _) = h.run(&js("flaky", src, json!({}))).await;
    assert_eq!((next.message.as_str(), next.warm), ("1", false));
}

#[tokio::test]
async fn hooks_are_called_in_callback_and_promise_style() {
    let h = Harness::new().await;
    let src = r#"module.exports = {
        preSavePage: (options, callback) => callback(null, { data: options.data.map(r => ({ ...r, seen: true })), errors: [] }),
        postMap: async (options) => options.postMapData.map(() => ({})),
        failing: (options, callback) => callback(new Error('hook failed')),
    };"#;
    let mut exec =
        Execution::new(Script::new("hooks", Language::Javascript, src), json!({"options": {"data": [{"id": 1}]}}));
    exec.entry = "preSavePage".into();
    let (outcome, _) = h.run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    assert_eq!(outcome.data, Some(json!({"data": [{"id": 1, "seen": true}], "errors": []})));
    exec.entry = "postMap".into();
    exec.input = json!({"options": {"postMapData": [1, 2]}});
    assert_eq!(h.run(&exec).await.0.data, Some(json!([{}, {}])));
    exec.entry = "failing".into();
    let (outcome, _) = h.run(&exec).await;
    assert_eq!((outcome.status, outcome.error.as_deref()), (Status::Failed, Some("hook failed")));
}

#[tokio::test]
async fn secrets_are_masked_in_logs_and_messages() {
    let h = Harness::new().await;
    let src = "module.exports = { run: async (args) => { console.log('token is', args.arguments.token); throw new Error('bad ' + args.globalArguments.pw); } };";
    let mut exec =
        js("leaky", src, json!({"arguments": {"token": "tok-SECRET-1"}, "globalArguments": {"pw": "pw-SECRET-2"}}));
    exec.secrets = vec!["tok-SECRET-1".into(), "pw-SECRET-2".into()];
    let (outcome, events) = h.run(&exec).await;
    let everything = format!("{:?} {:?}", events, outcome);
    assert!(!everything.contains("SECRET"), "{everything}");
    assert_eq!(texts(&events)[0].1, "token is ********");
    assert_eq!(outcome.error.as_deref(), Some("bad ********"));
}

#[tokio::test]
async fn the_log_is_cut_at_its_size_limit_with_a_marker() {
    let h = Harness::new().await;
    let src = "module.exports = { run: async () => { for (let i = 0; i < 500; i++) console.log('x'.repeat(100)); return 'ok'; } };";
    let mut exec = js("chatty", src, json!({}));
    exec.limits.max_log_bytes = 5_000;
    let (outcome, events) = h.run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded);
    assert!(outcome.log_truncated);
    let all = lines(&events);
    assert!(all.len() < 50, "{}", all.len());
    assert!(all.last().unwrap().contains("log truncated"), "{:?}", all.last());
}

#[tokio::test]
async fn saved_data_over_the_limit_fails_the_execution() {
    let h = Harness::new().await;
    let src = "module.exports = { big: async () => 'y'.repeat(10000) };";
    let mut exec = Execution::new(Script::new("big", Language::Javascript, src), json!({"options": {}}));
    exec.entry = "big".into();
    exec.limits.max_data_bytes = 1_000;
    let (outcome, _) = h.run(&exec).await;
    assert_eq!(outcome.status, Status::Failed);
    assert!(outcome.error.unwrap().contains("the limit is 1000 bytes"));
}

#[tokio::test]
async fn scripts_see_a_clean_environment_and_their_own_working_directory() {
    std::env::set_var("JUNCTION_SECRET_KEY", "server-secret-not-for-scripts");
    let h = Harness::new().await;
    let src = r#"const fs = require('fs'); module.exports = { run: async () => {
        fs.writeFileSync('scratch.txt', 'hi');
        return JSON.stringify({ env: Object.keys(process.env).sort(), cwd: process.cwd(), files: fs.readdirSync('.') });
    } };"#;
    let (first, _) = h.run(&js("envcheck", src, json!({}))).await;
    let seen: Value = serde_json::from_str(&first.message).unwrap();
    let env: Vec<&str> = seen["env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(!env.contains(&"JUNCTION_SECRET_KEY"), "{env:?}");
    assert!(
        env.iter().all(|k| [
            "PATH",
            "PWD",
            "TMPDIR",
            "HOME",
            "LANG",
            "TZ",
            "JUNCTION_NODE_MODULES",
            "AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE"
        ]
        .contains(k)),
        "{env:?}"
    );
    assert_eq!(seen["files"], json!(["scratch.txt"]));
    let (second, _) = h.run(&js("envcheck", src, json!({}))).await;
    let seen2: Value = serde_json::from_str(&second.message).unwrap();
    assert_ne!(seen["cwd"], seen2["cwd"], "each execution has its own directory");
    assert_eq!(seen2["files"], json!(["scratch.txt"]), "the previous directory was not reused");
    assert!(!std::path::Path::new(seen["cwd"].as_str().unwrap()).exists(), "removed afterwards");
}

#[tokio::test]
async fn supported_modules_work_with_a_real_http_server() {
    let h = Harness::new().await;
    let url = http_server(r#"{"issues": [{"key": "JIRA-1"}, {"key": "JIRA-2"}]}"#).await;
    let src = r#"
const axios = require('axios');
const _ = require('lodash');
const xml2js = require('xml2js');
const csv = require('csvtojson');
const jwt = require('jsonwebtoken');
const CryptoJS = require('crypto-js');
const uuidv4 = require('uuid/v4');
const fetch = require('node-fetch');
const querystring = require('querystring');
module.exports = { run: async (args) => {
    const res = await axios.get(args.arguments.url + '/rest/api/2/search?' + querystring.stringify({ jql: 'project=X' }));
    const keys = _.map(res.data.issues, 'key');
    const xml = await xml2js.parseStringPromise('<r><k>v</k></r>');
    const rows = await csv().fromString('a,b\n1,2');
    const token = jwt.sign({ sub: 'x' }, 'k');
    const sub = jwt.verify(token, 'k').sub;
    const hash = CryptoJS.SHA256('abc').toString();
    const id = uuidv4();
    const fetched = await (await fetch(args.arguments.url)).json();
    return JSON.stringify({ keys, xml: xml.r.k[0], rows, sub, hash: hash.slice(0, 8), uuid: /^[0-9a-f-]{36}$/.test(id), fetched: fetched.issues.length });
} };"#;
    let (outcome, events) = h.run(&js("modules", src, json!({"arguments": {"url": url}}))).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    let got: Value = serde_json::from_str(&outcome.message).unwrap();
    assert_eq!(
        got,
        json!({"keys": ["JIRA-1", "JIRA-2"], "xml": "v", "rows": [{"a": "1", "b": "2"}], "sub": "x",
               "hash": "ba7816bf", "uuid": true, "fetched": 2})
    );
}

/// The `require` allowlist is a courtesy; Node's permission model is the
/// wall. Every known way around the allowlist reaches a process spawn, and
/// every one is refused.
#[tokio::test]
async fn no_way_around_require_spawns_a_process_or_reads_outside_files() {
    let h = Harness::new().await;
    let src = r#"const fs = require('fs'); module.exports = { run: async () => {
        const tries = {
            main: () => require.main.require('child_process').execSync('id'),
            constructor: () => module.constructor._load('child_process').execSync('id'),
            mainModule: () => process.mainModule.require('child_process').execSync('id'),
            binding: () => process.binding('spawn_sync').spawn({ file: '/bin/id', args: ['id'], stdio: [] }),
            dynamicImport: async () => (await import('child_process')).execSync('id'),
            worker: () => new (module.constructor._load('worker_threads').Worker)('1', { eval: true }),
            readEtc: () => fs.readFileSync('/etc/passwd', 'utf8'),
        };
        const seen = {};
        for (const [name, attempt] of Object.entries(tries)) {
            try { await attempt(); seen[name] = 'ESCAPED'; } catch (e) { seen[name] = e.code || e.message; }
        }
        return JSON.stringify(seen);
    } };"#;
    let (outcome, events) = h.run(&js("escape", src, json!({}))).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    let seen: Value = serde_json::from_str(&outcome.message).unwrap();
    for (name, result) in seen.as_object().unwrap() {
        assert_ne!(result, "ESCAPED", "{name} got through: {seen}");
    }
}

#[tokio::test]
async fn half_an_emoji_and_split_writes_do_not_break_the_log() {
    let h = Harness::new().await;
    let src = r#"module.exports = { run: async (args) => {
        console.log('half: ' + '\ud83d');
        process.stdout.write('tok-' + 'SEC');
        process.stdout.write('RET-9 end\n');
        return 'ok \ud83d';
    } };"#;
    let mut exec = js("emoji", src, json!({}));
    exec.secrets = vec!["tok-SECRET-9".into()];
    let (outcome, events) = h.run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    let got = texts(&events);
    assert_eq!(got[0].1, "half: \u{fffd}");
    assert_eq!(got[1].1, "******** end", "a line written in pieces is one line, masked");
}
