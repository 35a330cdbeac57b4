//! The `junction` binary as a user runs it: `serve` in a child process on
//! a free loopback port, client commands against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_junction");

/// A running `junction serve`.
struct Serve {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// A command with none of the caller's JUNCTION_* settings.
fn junction() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("JUNCTION_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    // The build's shared install of the supported Node.js modules, so each
    // test's fresh data dir does not run npm.
    c.env("JUNCTION_MODULES_DIR", std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("junction-node-modules"));
    c
}

impl Serve {
    fn start(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = junction();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("junction serve starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("junction listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("serve did not start: {:?}", stderr.lock().unwrap())
        });
        Serve { child, url, stderr }
    }

    fn output(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The admin token printed on first start, if any.
    fn printed_token(&self) -> Option<String> {
        self.output().split_whitespace().find(|w| w.starts_with("jct_")).map(str::to_string)
    }

    fn client(&self, token: &str, args: &[&str]) -> Output {
        junction().env("JUNCTION_SERVER", &self.url).env("JUNCTION_TOKEN", token).args(args).output().unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected exit 1; stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

const ADMIN: &str = "cli-test-admin-token-0123456789";

#[test]
fn first_start_prints_an_admin_token_once_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[], &[]);
    let token = serve.printed_token().expect("a new store prints its admin token");
    ok(&serve.client(&token, &["steps", "list"]));
    let health: Value = serde_json::from_str(&ok(&junction()
        .args(["steps", "list", "--json", "--server", &serve.url, "--token", &token])
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(health, serde_json::json!([]));
    assert!(serve.terminate().success(), "SIGTERM ends serve with status 0");
    let key = std::fs::metadata(data.join("secret.key")).expect("key file generated");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }

    let again = Serve::start(&data, &[], &[]);
    assert_eq!(again.printed_token(), None, "the token is printed only on the first start: {}", again.output());
    ok(&again.client(&token, &["steps", "list"]));
}

#[test]
fn client_commands_manage_steps_apps_configs_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    assert_eq!(serve.printed_token(), None);
    let run = |args: &[&str]| serve.client(ADMIN, args);

    let js = write(dir.path(), "hello.js", "module.exports = { run: async () => 'hi' };\n");
    let out = ok(&run(&["steps", "upload", js.to_str().unwrap()]));
    assert!(out.contains("step hello version 1 (javascript"), "{out}");
    let py = write(
        dir.path(),
        "Sync.py",
        "from ipaascore.BaseStep import BaseStep\nclass Sync(BaseStep):\n    def execute(self):\n        pass\n",
    );
    ok(&run(&["steps", "upload", py.to_str().unwrap(), "--description", "a python step"]));
    let list = ok(&run(&["steps", "list"]));
    assert!(list.contains("hello") && list.contains("Sync") && list.contains("python"), "{list}");
    let shown = ok(&run(&["steps", "show", "hello"]));
    assert!(shown.contains("module.exports = { run: async () => 'hi' };"), "{shown}");
    let as_json: Value = serde_json::from_str(&ok(&run(&["steps", "list", "--json"]))).unwrap();
    assert_eq!(as_json.as_array().unwrap().len(), 2);

    let app = write(
        dir.path(),
        "job.json",
        r#"{"name": "job", "friendly_name": "My Job",
        "steps": [{"name": "a", "file": "hello", "output_to": ["b"]}, {"name": "b", "file": "Sync"}],
        "app_variables": [{"name": "apiKey", "value": "CLI-APP-SECRET", "encrypted": true}]}"#,
    );
    let out = ok(&run(&["apps", "upload", app.to_str().unwrap()]));
    assert!(out.contains("application job revision 1"), "{out}");
    assert!(ok(&run(&["apps", "list"])).contains("My Job"));
    let doc: Value = serde_json::from_str(&ok(&run(&["apps", "show", "job"]))).unwrap();
    assert_eq!(doc["app_variables"][0]["value"], Value::Null);

    let cfg = write(
        dir.path(),
        "em7.json",
        r#"{"name": "em7", "configuration_data": [
        {"name": "host", "value": "10.0.0.1", "encrypted": false},
        {"name": "pw", "value": "CLI-CONFIG-SECRET", "encrypted": true}]}"#,
    );
    ok(&run(&["configs", "upload", cfg.to_str().unwrap()]));
    let shown = ok(&run(&["configs", "show", "em7"]));
    assert!(shown.contains("10.0.0.1") && !shown.contains("CLI-CONFIG-SECRET"), "{shown}");
    assert!(ok(&run(&["configs", "list"])).contains("em7"));

    ok(&run(&["params", "set", "JiraUrl", "http://jira.local"]));
    let mut child = junction()
        .env("JUNCTION_SERVER", &serve.url)
        .env("JUNCTION_TOKEN", ADMIN)
        .args(["params", "set", "JiraToken", "--masked"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"CLI-GLOBAL-SECRET\n").unwrap();
    }
    assert!(ok(&child.wait_with_output().unwrap()).contains("set masked parameter JiraToken"));
    ok(&run(&["params", "set", "JiraUrl", "http://jira2.local"]));
    let params = ok(&run(&["params", "list"]));
    assert!(params.contains("http://jira2.local") && params.contains("masked"), "{params}");
    assert!(!params.contains("CLI-GLOBAL-SECRET"));
    let params: Value = serde_json::from_str(&ok(&run(&["params", "list", "--json"]))).unwrap();
    assert_eq!(params.as_array().unwrap().len(), 2, "setting one parameter keeps the others: {params}");
    ok(&run(&["params", "delete", "JiraUrl"]));
    let params: Value = serde_json::from_str(&ok(&run(&["params", "list", "--json"]))).unwrap();
    assert_eq!(params, serde_json::json!([{"name": "JiraToken", "type": "masked", "value": null}]));

    ok(&run(&["apps", "delete", "job"]));
    ok(&run(&["steps", "delete", "hello"]));
    ok(&run(&["configs", "delete", "em7"]));
    let list: Value = serde_json::from_str(&ok(&run(&["steps", "list", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn errors_are_one_clear_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let run = |args: &[&str]| serve.client(ADMIN, args);

    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"name": "bad", "steps": [{"name": "a", "file": "S", "output_to": ["ghost"]}]}"#,
    );
    let err = failed(&run(&["apps", "upload", bad.to_str().unwrap()]));
    assert_eq!(
        err.trim(),
        r#"error: validation_failed (400): steps[0].output_to[0]: no step of this application is named "ghost" [unknown_step]"#
    );
    let txt = write(dir.path(), "notes.txt", "hello");
    let err = failed(&run(&["steps", "upload", txt.to_str().unwrap()]));
    assert!(err.contains("must end in .js"), "{err}");
    let broken = write(dir.path(), "broken.js", "module.exports = {");
    let err = failed(&run(&["steps", "upload", broken.to_str().unwrap()]));
    assert!(err.starts_with("error: validation_failed (400): data:"), "{err}");
    let err = failed(&serve.client("wrong-token", &["steps", "list"]));
    assert!(err.starts_with("error: unauthorized (401)"), "{err}");
    let err = failed(&run(&["steps", "show", "nope"]));
    assert!(err.starts_with("error: not_found (404)"), "{err}");
    let err =
        failed(&junction().args(["steps", "list", "--server", "http://127.0.0.1:9", "--token", "x"]).output().unwrap());
    assert!(err.starts_with("error: cannot reach Junction at http://127.0.0.1:9"), "{err}");
}

/// The word of `text` that starts with `prefix` (a printed token).
fn word_with(text: &str, prefix: &str) -> Option<String> {
    text.split_whitespace().find(|w| w.starts_with(prefix)).map(str::to_string)
}

#[test]
fn stacks_upload_call_list_calls_rotate_the_token_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let run = |args: &[&str]| serve.client(ADMIN, args);
    let js = write(
        dir.path(),
        "pages.js",
        "exports.hooks = { preSavePage(options, callback) {\n\
         console.log('saving', options.data.length, 'with', process.env.API_KEY);\n\
         callback(null, { data: options.data.map(r => ({ ...r, greeting: process.env.GREETING })), errors: [] });\n\
         } };\n",
    );
    let js = js.to_str().unwrap();
    let out = run(&[
        "stacks",
        "upload",
        "pages",
        js,
        "--timeout",
        "30",
        "--env",
        "GREETING=hi",
        "--secret-env",
        "API_KEY=CLI-STACK-SECRET",
    ]);
    let stdout = ok(&out);
    assert!(stdout.contains("stack pages version 1 (js"), "{stdout}");
    assert!(stdout.contains("functions: index.js: hooks.preSavePage"), "{stdout}");
    let url = format!("{}/stacks/pages/function", serve.url.trim_end_matches('/'));
    assert!(stdout.contains(&format!("function URL: {url}")), "{stdout}");
    let token = word_with(&stdout, "jst_").expect("a new stack's token is printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only this once"), "{:?}", out.stderr);
    let same = ok(&run(&["stacks", "upload", "pages", js]));
    assert!(same.contains("stack pages version 1 "), "the same source is the same version: {same}");
    std::fs::write(js, std::fs::read_to_string(js).unwrap() + "// v2\n").unwrap();
    let again = ok(&run(&["stacks", "upload", "pages", js]));
    assert!(again.contains("stack pages version 2 ") && word_with(&again, "jst_").is_none(), "printed once: {again}");

    let list = ok(&run(&["stacks", "list"]));
    assert!(list.contains("pages") && list.contains("diy") && list.contains("30"), "{list}");
    let shown = ok(&run(&["stacks", "show", "pages"]));
    for want in ["GREETING=hi", "API_KEY=******** (encrypted)", &url, "hooks.preSavePage", "timeout:         30 s"] {
        assert!(shown.contains(want), "{want}: {shown}");
    }
    assert!(!shown.contains("CLI-STACK-SECRET"), "{shown}");
    let as_json: Value = serde_json::from_str(&ok(&run(&["stacks", "show", "pages", "--json"]))).unwrap();
    assert_eq!(as_json["versions"].as_array().unwrap().len(), 2, "{as_json}");

    let options = r#"{"data": [{"id": 1}, {"id": 2}], "errors": []}"#;
    let call = |token: &str, function: &str| {
        run(&["stacks", "call", "pages", function, "--options", options, "--token", token])
    };
    let answer: Value = serde_json::from_str(&ok(&call(&token, "preSavePage"))).unwrap();
    assert_eq!(answer["data"][1], serde_json::json!({"id": 2, "greeting": "hi"}), "{answer}");
    let err = failed(&call(&token, "nothingHere"));
    assert!(err.starts_with("error: invalid_function (422): "), "{err}");

    let calls = ok(&run(&["stacks", "calls", "pages"]));
    assert!(
        calls.contains("preSavePage") && calls.contains("succeeded") && calls.contains("invalid_function"),
        "{calls}"
    );
    let listed: Value = serde_json::from_str(&ok(&run(&["stacks", "calls", "pages", "--json"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["outcome"], "failed", "newest first: {listed}");
    let succeeded: Value = serde_json::from_str(&ok(&run(&[
        "stacks",
        "calls",
        "pages",
        "--outcome",
        "succeeded",
        "--since",
        "1h",
        "--function",
        "preSavePage",
        "--json",
    ])))
    .unwrap();
    assert_eq!(succeeded.as_array().unwrap().len(), 1, "{succeeded}");
    let id = succeeded[0]["id"].to_string();
    let out = run(&["stacks", "calls", "pages", "--id", &id]);
    let log = ok(&out);
    assert!(log.contains("saving 2 with") && !log.contains("CLI-STACK-SECRET"), "the log, secrets masked: {log}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("preSavePage succeeded"), "{:?}", out.stderr);

    let rotated = ok(&run(&["stacks", "token", "rotate", "pages"]));
    let fresh = word_with(&rotated, "jst_").expect("the new token is printed");
    assert_ne!(fresh, token);
    let err = failed(&call(&token, "preSavePage"));
    assert!(err.starts_with("error: unauthorized (401)"), "the old token is refused: {err}");
    ok(&call(&fresh, "preSavePage"));
    let err = failed(&call(ADMIN, "preSavePage"));
    assert!(err.starts_with("error: unauthorized (401)"), "an API token is no system token: {err}");

    let set = ok(&run(&["stacks", "set", "pages", "--unset-env", "GREETING", "--max-concurrency", "2"]));
    assert!(set.contains("max concurrency 2, env API_KEY"), "{set}");
    let shown: Value = serde_json::from_str(&ok(&run(&["stacks", "show", "pages", "--json"]))).unwrap();
    assert_eq!(shown["env"], serde_json::json!([{"name": "API_KEY", "encrypted": true}]), "the sealed value is kept");
    let answer: Value = serde_json::from_str(&ok(&call(&fresh, "preSavePage"))).unwrap();
    assert_eq!(answer["data"][0], serde_json::json!({"id": 1}), "GREETING is gone: {answer}");

    // A reader that goes away early ends the command quietly.
    let mut child = junction()
        .env("JUNCTION_SERVER", &serve.url)
        .env("JUNCTION_TOKEN", ADMIN)
        .args(["stacks", "show", "pages"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert!(ok(&run(&["stacks", "delete", "pages"])).contains("deleted stack pages"));
    let err = failed(&call(&fresh, "preSavePage"));
    assert!(err.starts_with("error: unauthorized (401)"), "{err}");
    let list: Value = serde_json::from_str(&ok(&run(&["stacks", "list", "--json"]))).unwrap();
    assert_eq!(list, serde_json::json!([]));
    let err = failed(&run(&["stacks", "show", "pages"]));
    assert!(err.starts_with("error: not_found (404)"), "{err}");
}

#[test]
fn a_bad_stack_upload_names_the_field_and_rule_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let run = |args: &[&str]| serve.client(ADMIN, args);
    let broken = write(dir.path(), "broken.js", "function (");
    let err = failed(&run(&["stacks", "upload", "broken", broken.to_str().unwrap()]));
    assert!(err.starts_with("error: validation_failed (400): data: ") && err.trim_end().ends_with("[loads]"), "{err}");
    let good = write(dir.path(), "good.js", "exports.hooks = { ping(o, cb) { cb(null, 'pong'); } };");
    let err = failed(&run(&["stacks", "upload", "good", good.to_str().unwrap(), "--timeout", "0"]));
    assert!(err.contains("timeout_seconds: must be 1 to 3600 [range]"), "{err}");
    let err = failed(&run(&["stacks", "upload", "good", good.to_str().unwrap(), "--config", "{nope"]));
    assert!(err.contains("--config: not valid JSON"), "{err}");
    let err = failed(&run(&["stacks", "upload", "good", dir.path().to_str().unwrap()]));
    assert!(err.contains("is a directory") && err.contains("tar czf"), "{err}");
    let notes = write(dir.path(), "notes.txt", "hello");
    let err = failed(&run(&["stacks", "upload", "good", notes.to_str().unwrap()]));
    assert!(err.contains("a stack is a .js file or a package"), "{err}");
    let list: Value = serde_json::from_str(&ok(&run(&["stacks", "list", "--json"]))).unwrap();
    assert_eq!(list, serde_json::json!([]), "nothing was stored");
}

#[test]
fn token_create_writes_to_the_store_and_the_token_works_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let out = ok(&junction()
        .args(["token", "create", "--name", "reporting", "--role", "viewer", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap());
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["role"], "viewer");
    let viewer = created["token"].as_str().unwrap();
    ok(&serve.client(viewer, &["steps", "list"]));
    let js = write(dir.path(), "x.js", "module.exports = {};");
    let err = failed(&serve.client(viewer, &["steps", "upload", js.to_str().unwrap()]));
    assert!(err.starts_with("error: forbidden (403)"), "{err}");
    // A usage error is clap's: exit status 2, with the accepted values.
    let out = junction()
        .args(["token", "create", "--name", "x", "--role", "root", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin, editor, operator, viewer"));
}

#[tokio::test]
async fn serve_runs_on_postgres() {
    let pg = junction_testkit::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let serve =
        Serve::start(&dir.path().join("data"), &["--database-url", &pg.url], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let js = write(dir.path(), "pg_step.js", "module.exports = { run: async () => 'pg' };");
    let out = ok(&serve.client(ADMIN, &["steps", "upload", js.to_str().unwrap()]));
    assert!(out.contains("step pg_step version 1"), "{out}");
    assert!(ok(&serve.client(ADMIN, &["steps", "list"])).contains("pg_step"));
    assert!(serve.terminate().success());
}

#[test]
fn apps_run_follows_the_log_and_exits_with_the_run_state() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let run = |args: &[&str]| serve.client(ADMIN, args);
    let js = write(
        dir.path(),
        "greet.js",
        "module.exports = { run: async (args) => { console.log('hello', args.arguments.who); return 'greeted'; } };",
    );
    ok(&run(&["steps", "upload", js.to_str().unwrap()]));
    let bad = write(dir.path(), "bad.js", "module.exports = { run: async () => { throw new Error('nope'); } };");
    ok(&run(&["steps", "upload", bad.to_str().unwrap()]));
    let app = write(
        dir.path(),
        "greeting.json",
        r#"{"name": "greeting", "app_variables": [{"name": "who", "value": "nobody"}], "steps": [{"name": "g", "file": "greet"}]}"#,
    );
    ok(&run(&["apps", "upload", app.to_str().unwrap()]));
    let failing = write(dir.path(), "failing.json", r#"{"name": "failing", "steps": [{"name": "b", "file": "bad"}]}"#);
    ok(&run(&["apps", "upload", failing.to_str().unwrap()]));

    let out = run(&["apps", "run", "greeting", "--param", "who=world"]);
    let stdout = ok(&out);
    assert!(stdout.contains("[LOG] \u{2013} hello world"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("SUCCESS"), "{stderr}");
    let id = stderr.lines().next().unwrap().trim_start_matches("run ").to_string();
    let shown: Value = serde_json::from_str(&ok(&run(&["tasks", "show", &id]))).unwrap();
    assert_eq!(shown["state"], "SUCCESS");
    assert_eq!(shown["app_vars"]["who"], "world");
    assert!(ok(&run(&["tasks", "log", &id])).contains("hello world"));
    let replayed = ok(&run(&["tasks", "replay", &id]));
    assert!(replayed.trim().starts_with("isapp-"), "{replayed}");

    let out = run(&["apps", "run", "failing"]);
    assert_eq!(out.status.code(), Some(1), "a failed run exits 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("[ERROR] \u{2013} nope"));

    let stepped = ok(&run(&["steps", "run", "greet", "--param", "who=solo"]));
    assert!(stepped.contains("hello solo") && stepped.contains("SUCCESS greeted"), "{stepped}");
}

/// A loopback HTTP server counting the requests it answers.
fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().map_while(Result::ok) {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf);
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, count)
}

/// A `junction worker` child process.
fn start_worker(data_dir: &Path) -> Child {
    let mut child = junction()
        .args(["worker", "--lease", "2", "--concurrency", "1", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("worker starts").unwrap();
        if line.starts_with("junction worker ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Uploads the step `script` and an application `app` running it with the
/// variable `url`.
fn upload_url_job(run: &dyn Fn(&[&str]) -> Output, dir: &Path, script: &Path, app: &str, url: &str) {
    ok(&run(&["steps", "upload", script.to_str().unwrap()]));
    let step = script.file_stem().unwrap().to_str().unwrap();
    let doc = serde_json::json!({"name": app, "app_variables": [{"name": "url", "value": url}],
        "steps": [{"name": "s", "file": step}]});
    let file = write(dir, &format!("{app}.json"), &doc.to_string());
    ok(&run(&["apps", "upload", file.to_str().unwrap()]));
}

#[test]
fn a_killed_worker_loses_its_attempt_and_the_run_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &["--workers", "0"], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let run = |args: &[&str]| serve.client(ADMIN, args);
    let (url, hits) = counting_server();
    let js = write(dir.path(), "slow.js", "const http = require('http');\nmodule.exports = { run: (args) => new Promise((ok) => http.get(args.arguments.url, () => setTimeout(() => ok('done'), 1500))) };");
    upload_url_job(&run, dir.path(), &js, "slow_app", &url);
    let out = run(&["apps", "run", "slow_app", "--wait", "0"]);
    let id = String::from_utf8_lossy(&out.stderr).lines().next().unwrap().trim_start_matches("run ").to_string();

    let mut first = start_worker(&data);
    wait_for("the first attempt to start", || hits.load(std::sync::atomic::Ordering::SeqCst) == 1);
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = start_worker(&data);
    wait_for("the run to finish", || {
        let shown: Value = serde_json::from_str(&ok(&run(&["tasks", "show", &id]))).unwrap();
        shown["state"] == "SUCCESS"
    });
    let shown: Value = serde_json::from_str(&ok(&run(&["tasks", "show", &id]))).unwrap();
    assert_eq!(shown["steps"][0]["attempts"], 2, "{shown}");
    let log = ok(&run(&["tasks", "log", &id]));
    assert!(log.contains("attempt 1 was lost"), "{log}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    second.kill().unwrap();
    let _ = second.wait();
}

/// Every JSON body posted, with its path.
type Posted = Arc<Mutex<Vec<(String, Value)>>>;

/// A loopback HTTP server that keeps every JSON body posted to it, by path.
fn recording_server() -> (String, Posted) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().map_while(Result::ok) {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                let (head, body_start) = loop {
                    let Ok(n) = sock.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&data[..i]).to_string(), i + 4);
                    }
                };
                let length: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while data.len() < body_start + length {
                    let Ok(n) = sock.read(&mut buf) else { return };
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = serde_json::from_slice(&data[body_start..]).unwrap_or(Value::Null);
                kept.lock().unwrap().push((path, body));
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"id\": \"x\"}");
            });
        }
    });
    (url, seen)
}

/// A `junction worker` killed (SIGKILL) in the middle of a flow run: its
/// lease runs out, another worker claims the run and resumes after the last
/// committed page. Every record reaches the target; at most the pages in
/// flight when it died arrive twice.
#[test]
fn a_killed_worker_s_flow_run_resumes_after_the_last_committed_page() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &["--workers", "0"], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let run = |args: &[&str]| serve.client(ADMIN, args);
    let (url, seen) = recording_server();
    let shop = concat!(env!("CARGO_MANIFEST_DIR"), "/../junction-server/tests/fixtures/flows/shop.js");
    let target = format!("TARGET={url}");
    ok(&run(&["stacks", "upload", "shop", shop, "--env", &target, "--env", "COUNT=400", "--env", "PAGE_DELAY_MS=150"]));
    let doc = serde_json::json!({"name": "resume", "maxParallelPages": 2,
      "connections": {"dst": {"type": "http", "baseURI": url}},
      "pageGenerators": [{"name": "orders", "type": "wrapper", "stack": "shop", "function": "exportOrders"}],
      "pageProcessors": [{"name": "push", "type": "http", "connection": "dst", "relativeURI": "/orders",
          "mapping": {"fields": [{"extract": "id", "generate": "orderId"}]}}]});
    let file = write(dir.path(), "resume.json", &doc.to_string());
    ok(&run(&["flows", "upload", file.to_str().unwrap()]));
    let started: Value = serde_json::from_str(&ok(&run(&["flows", "run", "resume", "--json"]))).unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let show = || -> Value { serde_json::from_str(&ok(&run(&["tasks", "show", &id]))).unwrap() };

    let mut first = start_worker(&data);
    wait_for("three committed pages", || show()["counters"]["push"]["pagesProcessed"].as_u64().unwrap_or(0) >= 3);
    first.kill().unwrap();
    first.wait().unwrap();
    let orders = |seen: &Mutex<Vec<(String, Value)>>| -> Vec<i64> {
        seen.lock().unwrap().iter().filter(|(p, _)| p == "/orders").filter_map(|(_, b)| b["orderId"].as_i64()).collect()
    };
    assert!(orders(&seen).len() < 400, "killed before the end");

    let mut second = start_worker(&data);
    wait_for("the run to finish", || show()["state"] == "SUCCESS");
    let shown = show();
    assert_eq!(shown["steps"][0]["attempts"], 2, "{shown}");
    assert_eq!(shown["counters"]["orders"]["pagesGenerated"], 20, "{shown}");
    assert_eq!(shown["counters"]["push"]["success"], 400, "{shown}");
    let got = orders(&seen);
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct, (1..=400).collect::<Vec<i64>>(), "every record arrived");
    // At most the two pages in flight and the one being read were redone.
    assert!(got.len() - distinct.len() <= 60, "{} records arrived twice", got.len() - distinct.len());
    let log = ok(&run(&["tasks", "log", &id]));
    assert!(log.contains("resuming after the last committed page"), "{log}");
    second.kill().unwrap();
    let _ = second.wait();
}

#[test]
fn runs_queued_before_a_restart_all_run_after_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (url, hits) = counting_server();
    let ids: Vec<String> = {
        let serve = Serve::start(&data, &["--workers", "0"], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
        let run = |args: &[&str]| serve.client(ADMIN, args);
        let js = write(dir.path(), "hit.js", "const http = require('http');\nmodule.exports = { run: (args) => new Promise((ok, fail) => http.get(args.arguments.url, () => ok('hit')).on('error', fail)) };");
        upload_url_job(&run, dir.path(), &js, "hit_app", &url);
        let ids = (0..5)
            .map(|_| {
                let out = run(&["apps", "run", "hit_app", "--wait", "0"]);
                String::from_utf8_lossy(&out.stderr).lines().next().unwrap().trim_start_matches("run ").to_string()
            })
            .collect();
        assert!(serve.terminate().success());
        ids
    };
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing ran without workers");
    let serve = Serve::start(&data, &[], &[]);
    wait_for("every queued run to finish", || {
        ids.iter().all(|id| {
            let shown: Value = serde_json::from_str(&ok(&serve.client(ADMIN, &["tasks", "show", id]))).unwrap();
            shown["state"] == "SUCCESS"
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 5, "each run ran exactly once");
}

#[test]
fn schedules_jobs_and_automated_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let run = |args: &[&str]| serve.client(ADMIN, args);
    let json = |args: &[&str]| -> Value { serde_json::from_str(&ok(&run(args))).unwrap() };
    let js = write(
        dir.path(),
        "tick.js",
        "module.exports = { run: async (args) => {\n\
         if (args.arguments.region === 'slow') { await new Promise((r) => setTimeout(r, 30000)); }\n\
         console.log('region', args.arguments.region, JSON.stringify(args.plutoraValues)); return 'ok'; } };\n",
    );
    ok(&run(&["steps", "upload", js.to_str().unwrap()]));
    let app = write(
        dir.path(),
        "nightly.json",
        r#"{"name": "nightly", "app_variables": [{"name": "region", "value": "eu"}], "steps": [{"name": "t", "file": "tick"}]}"#,
    );
    ok(&run(&["apps", "upload", app.to_str().unwrap()]));

    // Bad flags are usage errors (exit 2) and store nothing.
    let usage: [&[&str]; 7] = [
        &["schedule", "add", "nightly", "--every", "0h"],
        &["schedule", "add", "nightly", "--every", "5x"],
        &["schedule", "add", "nightly", "--every", "2h", "--cron", "*/5 * * * *"],
        &["schedule", "add", "nightly", "--every", "90s", "--start", "2026-11-23T09:00"],
        &["schedule", "add", "nightly", "--every", "1mo"],
        &["schedule", "add", "nightly"],
        &["apps", "trigger", "nightly", "--arg", "region"],
    ];
    for args in usage {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(json(&["schedule", "list", "--json"]), serde_json::json!([]));

    let out = ok(&run(&[
        "schedule",
        "add",
        "nightly",
        "--every",
        "2h",
        "--start",
        "2026-11-23T09:00",
        "--tz",
        "Europe/Berlin",
    ]));
    assert!(out.contains("Every 2 hours from 2026-11-23 09:00 Europe/Berlin"), "{out}");
    assert!(out.contains("next fire: "), "{out}");
    let every_id = out.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string();
    let cron = json(&["schedule", "add", "nightly", "--cron", "*/5 * * * *", "--json"]);
    assert_eq!(cron["description"], "Cron */5 * * * * (UTC)");
    assert_eq!(
        cron["schedule"],
        serde_json::json!({"schedule_type": "cron", "schedule_info": {"expression": "*/5 * * * *"}})
    );
    let cron_id = cron["id"].as_str().unwrap().to_string();
    let list = ok(&run(&["schedule", "list"]));
    assert!(list.contains(&every_id) && list.contains(&cron_id), "{list}");
    assert!(list.contains("Europe/Berlin") && list.contains("Cron */5 * * * * (UTC)"), "{list}");
    // --id replaces; --disabled stores it turned off.
    let replaced =
        json(&["schedule", "add", "nightly", "--cron", "0 3 * * *", "--id", &cron_id, "--disabled", "--json"]);
    assert_eq!((replaced["id"].as_str(), &replaced["enabled"]), (Some(cron_id.as_str()), &Value::Bool(false)));
    assert_eq!(json(&["schedule", "list", "--app", "nightly", "--json"]).as_array().unwrap().len(), 2);
    assert_eq!(json(&["schedule", "list", "--app", "other", "--json"]), serde_json::json!([]));

    let err = failed(&run(&["schedule", "add", "nightly", "--cron", "61 * * * *"]));
    assert!(err.starts_with("error: validation_failed (400): schedule.schedule_info.expression: "), "{err}");
    assert!(err.trim_end().ends_with("[cron]"), "{err}");

    let grid = ok(&run(&["jobs"]));
    assert!(grid.contains("nightly") && grid.contains("scheduled") && grid.contains("Every 2 hours from"), "{grid}");
    let jobs = json(&["jobs", "list", "--json"]);
    assert_eq!(jobs[0]["trigger"], "scheduled");
    assert_eq!(jobs[0]["schedule_ids"].as_array().unwrap().len(), 2);
    assert!(ok(&run(&["schedule", "disable", "nightly"])).contains("job nightly: schedule disabled"));
    let grid = ok(&run(&["jobs"]));
    assert!(grid.contains("Disabled"), "{grid}");
    assert_eq!(json(&["jobs", "--json"])[0]["next_run"], "Disabled");
    assert!(ok(&run(&["schedule", "delete", &cron_id])).contains(&format!("deleted schedule {cron_id}")));
    let left = json(&["schedule", "list", "--json"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!((left[0]["id"].as_str(), &left[0]["enabled"]), (Some(every_id.as_str()), &Value::Bool(false)));
    assert!(failed(&run(&["schedule", "delete", &cron_id])).starts_with("error: not_found (404)"));

    // Automated triggers wait for the server setting.
    let err = failed(&run(&["apps", "trigger", "nightly"]));
    assert!(err.starts_with("error: forbidden (403): ") && err.contains("automated_jobs_enabled"), "{err}");
    assert!(ok(&run(&["settings", "set", "automated_jobs_enabled", "true"])).contains("automated_jobs_enabled: true"));
    let ctx = write(dir.path(), "ctx.json", r#"{"Build": {"BuildNumber": "1.2.3"}}"#);
    let out =
        run(&["apps", "trigger", "nightly", "--context-file", ctx.to_str().unwrap(), "--arg", "region=us", "--follow"]);
    let log = ok(&out);
    assert!(log.contains(r#"region us {"Build":{"BuildNumber":"1.2.3"},"JobName":"nightly"}"#), "{log}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let done = stderr.lines().next().unwrap().trim_start_matches("run ").to_string();
    assert!(stderr.contains(&format!("run {done} SUCCESS")), "{stderr}");
    let err = failed(&run(&["apps", "trigger", "nightly", "--arg", "nope=1"]));
    assert!(err.contains("arguments.nope: ") && err.trim_end().ends_with("[unknown_parameter]"), "{err}");

    // Without --follow: the run id and its state at once.
    let out = run(&["apps", "trigger", "nightly", "--arg", "region=slow"]);
    ok(&out);
    let line = String::from_utf8_lossy(&out.stderr).lines().next().unwrap().to_string();
    let slow = line.split_whitespace().nth(1).unwrap().to_string();
    assert!(line.starts_with("run isapp-") && line.split_whitespace().count() == 3, "{line}");
    let stopped = ok(&run(&["jobs", "stop", "nightly"]));
    assert!(stopped.contains(&format!("stopped run {slow}")), "{stopped}");
    wait_for("the stopped run to end", || {
        ok(&run(&["jobs", "stop", "nightly"])).contains("no running instance of nightly")
    });

    let history = ok(&run(&["jobs", "history", "nightly"]));
    assert!(history.contains(&done) && history.contains(&slow), "{history}");
    assert!(history.contains("automated by admin") && history.contains("SUCCESS"), "{history}");
    assert!(history.contains("REVOKED"), "{history}");
    let newest = json(&["jobs", "history", "nightly", "--limit", "1", "--json"]);
    assert_eq!(newest.as_array().unwrap().len(), 1);
    assert_eq!((newest[0]["id"].as_str(), newest[0]["trigger"].as_str()), (Some(slow.as_str()), Some("automated")));
}

#[test]
fn companies_services_company_tokens_cicd_jobs_and_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let run = |args: &[&str]| serve.client(ADMIN, args);
    let json = |args: &[&str]| -> Value { serde_json::from_str(&ok(&run(args))).unwrap() };

    let out = ok(&run(&["companies", "create", "acme"]));
    let company = out.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(out.trim(), format!("company {company} acme"));
    assert!(ok(&run(&["companies", "list"])).contains("acme"));
    let service = json(&["companies", "add-service", &company, "deployer", "--json"]);
    assert_eq!(service["type"], "custom_cd");
    let service_id = service["id"].as_i64().unwrap();
    assert!(ok(&run(&["companies", "services", &company])).contains("deployer"));

    // A company token, made directly on the store (the server keeps running).
    let out = ok(&junction()
        .args(["token", "create", "--name", "acme agent", "--role", "operator", "--company", &company, "--json"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap());
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["company_id"].to_string(), company);
    let agent = created["token"].as_str().unwrap().to_string();
    let out = junction()
        .args(["token", "create", "--name", "x", "--role", "admin", "--company", &company, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be an admin token"));

    // The company's agent reports a job to the webhook.
    let job = serde_json::json!({
        "job_id": "build-77", "status": "Failed", "commit_sha": "a2e7da86cc392417b0d9f605b28038aae80b002f",
        "triggered_by": "dev@acme.example", "repo_name": "payments", "service_id": service_id,
        "job_start_time": 1704018030, "job_duration": 300, "job_type": "Production Deploy",
    });
    let url = format!("{}/webhook/company/{company}/cicd_job", serve.url);
    let (status, item) = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let resp = reqwest::Client::new().post(&url).bearer_auth(&agent).json(&job).send().await.unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    });
    assert_eq!(status, reqwest::StatusCode::CREATED, "{item}");

    let jobs = ok(&serve.client(&agent, &["companies", "jobs", &company]));
    for want in ["build-77", "Failed", "payments", "2023-12-31 10:20:30", "300", "dev@acme.example", "deployer"] {
        assert!(jobs.contains(want), "{want} in {jobs}");
    }
    let filtered = json(&["companies", "jobs", &company, "--status", "On Hold", "--json"]);
    assert_eq!(filtered, serde_json::json!([]));
    let listed = json(&["companies", "jobs", &company, "--repo", "payments", "--limit", "1", "--json"]);
    assert_eq!(listed[0]["id"], item["id"]);
    let err = failed(&serve.client(&agent, &["companies", "list"]));
    assert!(err.starts_with("error: forbidden (403)"), "{err}");

    // Triggers: an application to run, then add (several values become a
    // list), list, delete.
    let js = write(dir.path(), "notify.js", "module.exports = { run: async () => 'ok' };");
    ok(&run(&["steps", "upload", js.to_str().unwrap()]));
    let app = write(
        dir.path(),
        "notify.json",
        r#"{"name": "notify", "app_variables": [{"name": "channel", "value": "ops"}], "steps": [{"name": "n", "file": "notify"}]}"#,
    );
    ok(&run(&["apps", "upload", app.to_str().unwrap()]));
    let out = run(&[
        "triggers",
        "add",
        "on-failure",
        "--app",
        "notify",
        "--company",
        &company,
        "--service",
        &service_id.to_string(),
        "--status",
        "Failed",
        "--status",
        "On Hold",
        "--arg",
        "channel=deploys",
    ]);
    let added = ok(&out);
    assert!(added.contains("trigger on-failure added: runs notify"), "{added}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("automated jobs are off"));
    let list = ok(&run(&["triggers", "list"]));
    assert!(
        list.contains("on-failure") && list.contains("status=Failed|On Hold") && list.contains("channel=deploys"),
        "{list}"
    );
    let stored = json(&["triggers", "list", "--json"]);
    assert_eq!(stored[0]["filter"], serde_json::json!({"service_id": service_id, "status": ["Failed", "On Hold"]}));
    assert_eq!(stored[0]["company_id"].to_string(), company);
    let out = run(&["triggers", "add", "bad", "--app", "notify", "--status", "Done"]);
    assert_eq!(out.status.code(), Some(2), "an unknown status is a usage error");
    assert!(ok(&run(&["triggers", "delete", "on-failure"])).contains("deleted trigger on-failure"));
    assert_eq!(json(&["triggers", "list", "--json"]), serde_json::json!([]));
    assert!(failed(&run(&["triggers", "delete", "on-failure"])).starts_with("error: not_found (404)"));
}

/// `serve --amqp-url`: XDS messages published to the queue are stored; a
/// poison message is recorded and dead-lettered; after the server is killed
/// (-9) a redelivered copy of a stored message is not stored again.
#[test]
fn serve_consumes_xds_messages_from_rabbitmq() {
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::{FieldTable, ShortString};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let queue = format!("junction.test.{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (conn, channel) = rt.block_on(async {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let conn = Connection::connect(AMQP, props).await.expect("RabbitMQ on 127.0.0.1:5672");
        let channel = conn.create_channel().await.unwrap();
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel.queue_declare(&queue, durable, FieldTable::default()).await.unwrap();
        (conn, channel)
    });
    let publish = |id: &str, body: String| {
        rt.block_on(async {
            let props = BasicProperties::default().with_message_id(ShortString::from(id)).with_delivery_mode(2);
            let confirm = channel
                .basic_publish("", &queue, BasicPublishOptions::default(), body.as_bytes(), props)
                .await
                .unwrap();
            confirm.await.unwrap();
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let token = "cli-test-admin-token-0123456789";
    let args = ["--amqp-url", AMQP, "--amqp-queue", queue.as_str(), "--workers", "0"];
    let env = [("JUNCTION_ADMIN_TOKEN", token)];
    let client = reqwest::Client::new();
    let call = |url: &str, method: reqwest::Method, path: &str, body: Option<serde_json::Value>| -> serde_json::Value {
        rt.block_on(async {
            let mut req = client.request(method, format!("{url}{path}")).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            req.send().await.unwrap().error_for_status().unwrap().json().await.unwrap()
        })
    };
    let ready = |q: &str| {
        rt.block_on(async {
            let passive = QueueDeclareOptions { passive: true, durable: true, ..QueueDeclareOptions::default() };
            channel.queue_declare(q, passive, FieldTable::default()).await.unwrap().message_count()
        })
    };
    let serve = Serve::start(dir.path(), &args, &env);
    let source =
        call(&serve.url, reqwest::Method::POST, "/api/v1/xds/sources", Some(serde_json::json!({"name": "mq"})));
    let key = source["source_association_key"].as_str().unwrap().to_string();
    let schema = serde_json::json!({"api_version": "1", "source_association_key": key, "custom_schema": {
        "name": "Deploy", "schema_id": "deploy-cli", "schema_version": 1, "event_time": "2024-01-01T00:00:00Z",
        "fields": ["schema_id", "schema_version", "event_time", "remote_id", "env"],
        "required": ["schema_id", "schema_version", "event_time", "remote_id"], "important": ["env"]}});
    let activity = serde_json::json!({"api_version": "1", "source_association_key": key, "custom_data": {
        "schema_id": "deploy-cli", "schema_version": 1, "event_time": "2024-01-02T00:00:00Z",
        "remote_id": "d-1", "env": "staging"}});
    publish("s-1", schema.to_string());
    publish("a-1", activity.to_string());
    publish("bad-1", "{oops".to_string());
    let activities = |url: &str| call(url, reqwest::Method::GET, "/api/v1/xds/activities", None);
    wait_for("the activity", || activities(&serve.url).as_array().is_some_and(|a| a.len() == 1));
    wait_for("the rejection", || {
        call(&serve.url, reqwest::Method::GET, "/api/v1/xds/rejections", None).as_array().is_some_and(|r| r.len() == 1)
    });

    // Killed outright; the same message comes again (as after a crash
    // between the store and the acknowledgement) and is not stored twice.
    let mut serve = serve;
    let _ = serve.child.kill();
    let _ = serve.child.wait();
    publish("a-1", activity.to_string());
    let mut second = activity.clone();
    second["custom_data"]["env"] = serde_json::json!("production");
    publish("a-2", second.to_string());
    let serve = Serve::start(dir.path(), &args, &env);
    wait_for("the second message", || {
        activities(&serve.url).as_array().is_some_and(|a| a.first().is_some_and(|x| x["fields"]["env"] == "production"))
    });
    // A graceful stop finishes what is in hand: then nothing is left in the
    // queue, so the copy of a-1 has been handled too, and the poison
    // message sits in the dead-letter queue.
    let status = serve.terminate();
    assert!(status.success());
    assert_eq!(ready(&queue), 0, "every message handled and acknowledged");
    assert_eq!(ready(&format!("{queue}.dead")), 1, "the poison message was dead-lettered");
    let serve = Serve::start(dir.path(), &args, &env);
    let list = activities(&serve.url);
    assert_eq!(list[0]["sub_event_count"], 2, "a-1 stored once, a-2 once: {list}");
    assert!(serve.terminate().success());
    rt.block_on(async {
        for q in [queue.clone(), format!("{queue}.dead")] {
            let _ = channel.queue_delete(&q, QueueDeleteOptions::default()).await;
        }
        let _ = conn.close(200, "done").await;
    });
}

/// `junction user create` reads the password from standard input; the user
/// then signs in to the served store's web UI session.
#[test]
fn user_create_makes_a_user_who_can_sign_in() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let mut child = junction()
        .args(["user", "create", "alice", "--role", "editor", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sign_in = |password: &str| {
        rt.block_on(async {
            let resp = reqwest::Client::new()
                .post(format!("{}/api/v1/session", serve.url))
                .json(&serde_json::json!({"user": "alice", "password": password}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let (status, me) = sign_in("correct horse battery");
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "editor");
    assert_eq!(sign_in("correct horse").0, 401);
}

/// Runs `tests/browser/SCRIPT` (playwright-core driving Debian's Chromium,
/// `apt-get install chromium`) against `serve`, signed in with ADMIN.
/// Screenshots go to `target/tmp/junction-ui-screenshots`.
fn run_browser_script(script: &str, serve: &Serve) {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Chromium: apt-get install chromium"
    );
    // playwright-core, installed once per build directory from the lock file;
    // a file lock (released when the process dies) keeps two browser tests
    // from installing at once.
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let modules = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("junction-browser-tests");
    std::fs::create_dir_all(&modules).unwrap();
    let lock = std::fs::File::create(modules.join("install.lock")).unwrap();
    lock.lock().unwrap();
    if !modules.join("node_modules/playwright-core/package.json").exists() {
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(here.join(f), modules.join(f)).unwrap();
        }
        let out = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&modules)
            .output()
            .expect("npm runs");
        assert!(out.status.success(), "npm ci: {}", String::from_utf8_lossy(&out.stderr));
    }
    drop(lock);

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("junction-ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(here.join(script))
        .env("NODE_PATH", modules.join("node_modules"))
        .env("JUNCTION_URL", &serve.url)
        .env("JUNCTION_TOKEN", ADMIN)
        .env("SHOTS", &shots)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "browser tests in {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Integration Hub pages in a real browser (`tests/browser/ui.test.js`)
/// against a served store with a finished job and a running one.
#[test]
fn the_web_ui_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    let hello = write(
        dir.path(),
        "hello.js",
        "module.exports = { run: async (args) => { console.log('hello', args.arguments.who); return 'done'; } };",
    );
    let slow = write(
        dir.path(),
        "slow.js",
        "module.exports = { run: () => new Promise((resolve) => setTimeout(resolve, 120000)) };",
    );
    let hello_app = write(
        dir.path(),
        "hello.json",
        r#"{"name": "hello-job", "friendly_name": "Hello job", "description": "Says hello",
        "app_variables": [{"name": "who", "value": "world"}], "steps": [{"name": "main", "file": "hello"}]}"#,
    );
    let slow_app =
        write(dir.path(), "slow.json", r#"{"name": "slow-job", "steps": [{"name": "wait", "file": "slow"}]}"#);
    for args in [
        vec!["steps", "upload", hello.to_str().unwrap()],
        vec!["steps", "upload", slow.to_str().unwrap()],
        vec!["apps", "upload", hello_app.to_str().unwrap()],
        vec!["apps", "upload", slow_app.to_str().unwrap()],
        vec!["schedule", "add", "hello-job", "--every", "2h", "--start", "2026-01-01T00:00", "--tz", "Europe/Berlin"],
        vec!["apps", "run", "hello-job"],
    ] {
        ok(&serve.client(ADMIN, &args));
    }
    // The slow job is started and left running (apps run would follow it).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/applications/slow-job/run", serve.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
    });

    run_browser_script("ui.test.js", &serve);
}

/// The Applications and Configurations pages in a real browser
/// (`tests/browser/apps.test.js`); the script creates what it needs through
/// the API.
#[test]
fn the_application_pages_work_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    run_browser_script("apps.test.js", &serve);
}

/// The Stacks page in a real browser (`tests/browser/stacks.test.js`): a
/// one-file stack uploaded through the form, called over HTTP, its calls
/// and logs, token rotation and deletion.
#[test]
fn the_stacks_page_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN)]);
    run_browser_script("stacks.test.js", &serve);
}

/// `PATH` with Node.js, npm and Python but no bubblewrap, as on a host
/// where it is not installed.
fn path_without_bwrap(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["node", "npm", "python3", "kill", "sh", "env"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not on PATH"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    bin
}

#[test]
fn serve_without_bubblewrap_warns_reports_user_isolation_and_required_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let bin = path_without_bwrap(dir.path());
    let path = bin.to_str().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN), ("PATH", path)]);
    assert!(serve.output().contains("bubblewrap (bwrap) is not installed"), "no warning: {}", serve.output());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let health: Value =
        rt.block_on(async { reqwest::get(format!("{}/healthz", serve.url)).await.unwrap().json().await.unwrap() });
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["sandbox"]["sandbox"], if root { "user" } else { "none" }, "{health}");
    let js = write(dir.path(), "whoami.js", "module.exports = { run: async () => 'uid=' + process.getuid() };");
    ok(&serve.client(ADMIN, &["steps", "upload", js.to_str().unwrap()]));
    let out = serve.client(ADMIN, &["steps", "run", "whoami", "--json"]);
    let text = ok(&out);
    if root {
        let at = text.find("uid=").unwrap_or_else(|| panic!("no uid in the step's output: {text}")) + "uid=".len();
        let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
        let uid: u32 = digits.parse().unwrap_or_else(|_| panic!("no uid in the step's output: {text}"));
        // The run uids of the default `--run-uids 90000-90255` (the first,
        // 90000, is the scripts' group, not a uid a script runs as).
        assert!((90001..=90255).contains(&uid), "a script ran as uid {uid}, not a run uid: {text}");
    }
    assert!(serve.terminate().success());

    let out = junction()
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox", "required", "--data-dir"])
        .arg(dir.path().join("data2"))
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--sandbox required") && err.contains("bubblewrap"), "{err}");
}

#[test]
fn a_broken_bubblewrap_makes_serve_degraded_and_refuses_runs_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let bin = path_without_bwrap(dir.path());
    let fake = bin.join("bwrap");
    std::fs::write(&fake, "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = bin.to_str().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[], &[("JUNCTION_ADMIN_TOKEN", ADMIN), ("PATH", path)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let (code, health): (u16, Value) = rt.block_on(async {
        let r = reqwest::get(format!("{}/healthz", serve.url)).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    });
    assert_eq!((code, health["status"].as_str()), (503, Some("degraded")), "{health}");
    assert_eq!(health["sandbox"]["ok"], false, "{health}");
    assert!(health["sandbox"]["problem"].as_str().unwrap().contains("No permissions"), "{health}");
    let app = serde_json::json!({"name": "noop", "steps": [{"name": "s", "file": "missing"}]});
    let (code, body): (u16, Value) = rt.block_on(async {
        let r = client
            .post(format!("{}/api/v1/applications", serve.url))
            .bearer_auth(ADMIN)
            .json(&app)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
        let r =
            client.post(format!("{}/api/v1/applications/noop/run", serve.url)).bearer_auth(ADMIN).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    });
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(serve.terminate().success());
}
