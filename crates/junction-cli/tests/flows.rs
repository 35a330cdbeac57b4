//! `junction flows ...` as a user runs it, against a real `junction serve`
//! in a child process; and the Flows page in a real browser
//! (`tests/browser/flows.test.js`). The flows use the "shop" stack of
//! `tests/fixtures/shop-stack.js`, uploaded with `junction stacks upload`.
//!
//! The harness (`Serve`, `run_browser_script`) is the one of `cli.rs`, kept
//! apart so the two test binaries do not depend on each other.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_junction");
const ADMIN: &str = "flows-test-admin-token-0123456789";
const SHOP: &str = include_str!("fixtures/shop-stack.js");
const FLOW: &str = include_str!("fixtures/orders-flow.json");
/// The connection secret of `orders-flow.json`, which importOrders checks.
const SECRET: &str = "sk-shop-0451";

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
    c.env("JUNCTION_MODULES_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("junction-node-modules"));
    c
}

impl Serve {
    fn start(data_dir: &Path) -> Serve {
        let mut child = junction()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("JUNCTION_ADMIN_TOKEN", ADMIN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("junction serve starts");
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

    fn client(&self, args: &[&str]) -> Output {
        junction().env("JUNCTION_SERVER", &self.url).env("JUNCTION_TOKEN", ADMIN).args(args).output().unwrap()
    }

    /// A request from the test itself (what the CLI has no command for).
    fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut req = reqwest::Client::new()
                .request(method, format!("{}{path}", self.url.trim_end_matches('/')))
                .bearer_auth(ADMIN);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("serve's output:\n{}", self.stderr.lock().unwrap().join("\n"));
        }
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

fn failed(out: &Output) -> (String, String) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn json_of(out: &Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// The cells of the table row that starts with `first`: the tables have
/// outer borders only, so cells are apart by two spaces or more.
fn row(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| {
            let inner = l.trim_matches(|c| c == '│' || c == ' ');
            inner.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}

fn cells(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The shop stack, uploaded as a user would.
fn upload_shop(serve: &Serve, dir: &Path) {
    let js = write(dir, "shop.js", SHOP);
    let out = ok(&serve.client(&["stacks", "upload", "shop", js.to_str().unwrap()]));
    assert!(out.contains("stack shop version 1"), "{out}");
}

#[test]
fn flows_upload_list_show_run_errors_retry_resolve_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"));
    let run = |args: &[&str]| serve.client(args);
    upload_shop(&serve, dir.path());

    // A document naming a function the stack does not export: the field and rule.
    let mut bad: Value = serde_json::from_str(FLOW).unwrap();
    bad["pageProcessors"][0]["hooks"]["preMap"]["function"] = json!("noSuchHook");
    let bad = write(dir.path(), "bad.json", &bad.to_string());
    let (_, err) = failed(&run(&["flows", "upload", bad.to_str().unwrap()]));
    assert!(err.starts_with("error: validation_failed (400): pageProcessors[0].hooks.preMap: "), "{err}");
    assert!(err.trim_end().ends_with("[unknown_function]"), "{err}");
    let notes = write(dir.path(), "flow.txt", FLOW);
    let (_, err) = failed(&run(&["flows", "upload", notes.to_str().unwrap()]));
    assert!(err.contains("a flow document is a .json file"), "{err}");
    let broken = write(dir.path(), "broken.json", "{\"name\": ");
    let (_, err) = failed(&run(&["flows", "upload", broken.to_str().unwrap()]));
    assert!(err.contains("broken.json is not valid JSON"), "{err}");

    let file = write(dir.path(), "orders-flow.json", FLOW);
    let file = file.to_str().unwrap();
    let out = ok(&run(&["flows", "upload", file]));
    assert_eq!(out.trim(), "flow orders_sync revision 1");
    let out = ok(&run(&["flows", "upload", file]));
    assert_eq!(out.trim(), "flow orders_sync revision 2", "each upload is a revision");
    let uploaded: Value = json_of(&run(&["flows", "upload", file, "--json"]));
    assert_eq!(uploaded["revision"], 3, "{uploaded}");
    assert_eq!(uploaded["document"]["connections"]["shopApi"]["encrypted"]["apiKey"], "********", "{uploaded}");

    let list = ok(&run(&["flows", "list"]));
    assert_eq!(row(&list, "NAME"), cells(&["NAME", "REVISION", "UPDATED"]), "{list}");
    let r = row(&list, "orders_sync");
    assert_eq!(r[1], "3", "{list}");
    assert!(r[2].starts_with("20"), "a local time: {list}");
    let listed = json_of(&run(&["flows", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // show: the document on stdout (masked), the rest on stderr.
    let out = run(&["flows", "show", "orders_sync"]);
    let shown = json_of(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(shown["name"], "orders_sync");
    assert_eq!(shown["pageProcessors"][0]["hooks"]["postMap"]["function"], "stamp");
    assert_eq!(shown["connections"]["shopApi"]["encrypted"]["apiKey"], "********");
    for want in ["flow orders_sync revision 3", "offline connections: -", "last exports: -"] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    let full = json_of(&run(&["flows", "show", "orders_sync", "--json"]));
    assert_eq!(full["revision"], 3);
    assert_eq!(full["document"], shown);
    // Shown and uploaded again: the sealed key is kept (the run below needs it).
    let again = write(dir.path(), "again.json", &serde_json::to_string_pretty(&shown).unwrap());
    assert_eq!(ok(&run(&["flows", "upload", again.to_str().unwrap()])).trim(), "flow orders_sync revision 4");

    // Run and wait: 5 exported on 2 pages; at push 3 imported, 1 ignored (cancelled), 1 refused.
    let out = ok(&run(&["flows", "run", "orders_sync", "--wait", "60"]));
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("run ") && first.ends_with(" SUCCESS: completed_with_errors"), "{out}");
    assert_eq!(row(&out, "STEP"), cells(&["STEP", "KIND", "PAGES", "SUCCESS", "ERROR", "IGNORE"]), "{out}");
    assert_eq!(row(&out, "orders"), cells(&["orders", "export wrapper", "2", "5", "0", "0"]), "{out}");
    assert_eq!(row(&out, "push"), cells(&["push", "import wrapper", "2", "3", "1", "1"]), "{out}");
    let run_id = first.split_whitespace().nth(1).unwrap().to_string();
    let (status, task) = serve.api(reqwest::Method::GET, &format!("/api/v1/tasks/{run_id}"), None);
    assert_eq!(status, 200);
    assert_eq!(task["app_name"], ".flow.orders_sync");
    assert_eq!(task["counters"]["push"], json!({"success": 3, "error": 1, "ignore": 1, "pagesProcessed": 2}));

    let stderr = String::from_utf8_lossy(&run(&["flows", "show", "orders_sync"]).stderr).into_owned();
    assert!(stderr.contains("last exports:\n  orders: 20"), "the export's last run: {stderr}");

    // The record error, with its retry data key.
    let errors = ok(&run(&["flows", "errors", "orders_sync"]));
    assert_eq!(row(&errors, "OCCURRED"), cells(&["OCCURRED", "STEP", "CODE", "MESSAGE", "RETRY DATA KEY"]));
    let listed = json_of(&run(&["flows", "errors", "orders_sync", "--json"]));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["step"], "push");
    assert_eq!(listed[0]["code"], "rejected");
    assert_eq!(listed[0]["runId"], run_id.as_str());
    let key = listed[0]["retryDataKey"].as_str().unwrap().to_string();
    let line = errors.lines().find(|l| l.contains("rejected")).unwrap_or_else(|| panic!("{errors}"));
    assert!(line.contains("push") && line.contains(&key) && line.contains("order 4 is rejected"), "{errors}");
    let (_, record) = serve.api(reqwest::Method::GET, &format!("/api/v1/flows/orders_sync/errors/{key}"), None);
    assert_eq!(record["step"], "push");
    assert_eq!(record["data"], json!({"id": 4, "status": "open", "bad": true, "region": "eu"}), "as it entered push");
    let none = json_of(&run(&["flows", "errors", "orders_sync", "--step", "orders", "--json"]));
    assert_eq!(none, json!([]));

    // Retried as it is: refused again, a new error in place of the old.
    let out = ok(&run(&["flows", "retry", "orders_sync", "--key", &key, "--wait", "60"]));
    assert!(out.lines().next().unwrap().ends_with(" SUCCESS: completed_with_errors"), "{out}");
    assert_eq!(row(&out, "push"), cells(&["push", "import wrapper", "1", "0", "1", "0"]), "{out}");
    let listed = json_of(&run(&["flows", "errors", "orders_sync", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let key2 = listed[0]["retryDataKey"].as_str().unwrap().to_string();
    assert_ne!(key2, key);
    let all = ok(&run(&["flows", "errors", "orders_sync", "--all"]));
    assert!(row(&all, "OCCURRED").contains(&"RESOLVED".to_string()), "{all}");
    assert_eq!(all.lines().filter(|l| l.contains("rejected")).count(), 2, "the retried one too: {all}");

    // Fixed in its retry data, retried: imported.
    let fixed = json!({"data": {"id": 4, "status": "open", "bad": false, "region": "eu"}});
    let (status, _) = serve.api(reqwest::Method::PUT, &format!("/api/v1/flows/orders_sync/errors/{key2}"), Some(fixed));
    assert_eq!(status, 200);
    let out = ok(&run(&["flows", "retry", "orders_sync", "--all", "--step", "push", "--wait", "60"]));
    assert!(out.lines().next().unwrap().ends_with(" SUCCESS: completed"), "{out}");
    assert_eq!(row(&out, "push"), cells(&["push", "import wrapper", "1", "1", "0", "0"]), "{out}");
    assert_eq!(json_of(&run(&["flows", "errors", "orders_sync", "--json"])), json!([]));
    let (_, err) = failed(&run(&["flows", "retry", "orders_sync", "--all"]));
    assert!(err.contains("nothing_to_retry"), "{err}");

    // Resolve: by key, then all of a step.
    let run_json = json_of(&run(&["flows", "run", "orders_sync", "--wait", "60", "--json"]));
    assert_eq!(run_json["outcome"], "completed_with_errors", "{run_json}");
    assert_eq!(run_json["counters"]["orders"], json!({"success": 5, "error": 0, "ignore": 0, "pagesGenerated": 2}));
    let listed = json_of(&run(&["flows", "errors", "orders_sync", "--json"]));
    let key3 = listed[0]["retryDataKey"].as_str().unwrap().to_string();
    assert_eq!(ok(&run(&["flows", "resolve", "orders_sync", "--key", &key3])).trim(), "resolved 1 error");
    assert_eq!(json_of(&run(&["flows", "errors", "orders_sync", "--json"])), json!([]));
    // Without waiting: the run is queued; retry a fresh error in the same way later.
    let out = ok(&run(&["flows", "run", "orders_sync"]));
    assert!(out.starts_with("run "), "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while serve.api(reqwest::Method::GET, &format!("/api/v1/tasks/{id}"), None).1["outcome"].is_null() {
        assert!(std::time::Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let resolved = json_of(&run(&["flows", "resolve", "orders_sync", "--all", "--step", "push", "--json"]));
    assert_eq!(resolved, json!({"resolved": 1}));

    // A reader that goes away early ends the command quietly.
    let mut child = junction()
        .env("JUNCTION_SERVER", &serve.url)
        .env("JUNCTION_TOKEN", ADMIN)
        .args(["flows", "errors", "orders_sync", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Usage errors: exit 2.
    for args in [
        vec!["flows", "retry", "orders_sync"],
        vec!["flows", "retry", "orders_sync", "--key", "k", "--all"],
        vec!["flows", "resolve", "orders_sync", "--key", "k", "--step", "push"],
    ] {
        assert_eq!(run(&args).status.code(), Some(2), "{args:?}");
    }

    assert_eq!(ok(&run(&["flows", "delete", "orders_sync"])).trim(), "deleted flow orders_sync");
    let (_, err) = failed(&run(&["flows", "show", "orders_sync"]));
    assert!(err.starts_with("error: not_found (404)"), "{err}");
    assert_eq!(json_of(&run(&["flows", "list", "--json"])), json!([]));
    let (_, task) = serve.api(reqwest::Method::GET, &format!("/api/v1/tasks/{run_id}"), None);
    assert_eq!(task["id"], run_id.as_str(), "its runs stay");
}

#[test]
fn a_failed_flow_run_exits_1_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"));
    let run = |args: &[&str]| serve.client(args);
    upload_shop(&serve, dir.path());
    let mut flow: Value = serde_json::from_str(FLOW).unwrap();
    flow["name"] = json!("closed_shop");
    flow["pageGenerators"][0]["function"] = json!("exportBroken");
    let file = write(dir.path(), "closed.json", &flow.to_string());
    ok(&run(&["flows", "upload", file.to_str().unwrap()]));
    let (out, _) = failed(&run(&["flows", "run", "closed_shop", "--wait", "60"]));
    assert!(out.lines().next().unwrap().ends_with(" FAILURE: failed"), "{out}");
    assert!(out.contains("the shop is closed"), "the error is shown: {out}");
    assert_eq!(row(&out, "push")[1], "import wrapper", "{out}");
    let (out, _) = failed(&run(&["flows", "run", "closed_shop", "--wait", "60", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "FAILURE", "{v}");
    let (_, err) = failed(&run(&["flows", "run", "no_such_flow"]));
    assert!(err.starts_with("error: not_found (404)"), "{err}");
}

/// Runs `tests/browser/SCRIPT` (playwright-core driving Debian's Chromium)
/// against `serve`, signed in with ADMIN, as `cli.rs` does.
fn run_browser_script(script: &str, serve: &Serve) {
    assert!(Path::new("/usr/bin/chromium").exists(), "the browser tests need Chromium: apt-get install chromium");
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let modules = Path::new(env!("CARGO_TARGET_TMPDIR")).join("junction-browser-tests");
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
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("junction-ui-screenshots");
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

/// The Flows page in a real browser (`tests/browser/flows.test.js`): the
/// script uploads the stack through the API and the flow through the form,
/// runs it, reads the counters and errors, retries and resolves.
#[test]
fn the_flows_page_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"));
    run_browser_script("flows.test.js", &serve);
    assert!(!serve.stderr.lock().unwrap().iter().any(|l| l.contains(SECRET)), "the secret is in the server's log");
}
