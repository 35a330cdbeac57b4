//! `junction flows`: record flows (spec 001, integrator.io's flows). An
//! export produces pages of records, the page processors (imports and
//! lookups) take them, and the hooks are stack functions. A flow run is a
//! run like any other (`/api/v1/tasks/{id}`), with per-step counters and an
//! outcome; records that fail are kept as errors with retry data, which
//! `flows retry` sends through the flow again.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{ArgGroup, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{emit, local_time, or_dash, print_json, query, read_file, s, segment, table, Api};
use crate::ClientArgs;

/// The longest `?wait=` the server takes; longer waits poll the run.
const SERVER_WAIT_SECS: u64 = 30;
/// How often a run is asked for while `--wait` lasts beyond the server's.
const POLL: Duration = Duration::from_millis(500);
/// Characters of an error message shown in the errors table.
const MESSAGE_CHARS: usize = 60;

#[derive(Subcommand, Debug)]
pub enum FlowsCommand {
    /// Store a flow document (a .json file) as the flow's next revision; the
    /// first upload creates the flow. Every hook and wrapper must be a
    /// function its stack exports; each problem is named by its field.
    Upload {
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List flows at their latest revision.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A flow's document on stdout (ready for `flows upload`; connection
    /// secrets shown as ********, which an upload keeps), its revision,
    /// offline connections and last export times on stderr.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a flow: prints the run's state, outcome and per-step counters.
    /// Exit status 1 when the run failed or was stopped.
    Run {
        name: String,
        /// Wait up to this many seconds for the run to end (default: do not wait).
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A flow's record errors, newest first (open ones unless --all).
    Errors {
        name: String,
        /// Only errors of this flow step.
        #[arg(long, value_name = "STEP")]
        step: Option<String>,
        /// Also resolved errors.
        #[arg(long)]
        all: bool,
        /// Errors to show (1-1000; the server's default is 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Only errors older than this id (the next page).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Retry errors: their records re-enter the step that failed them, in a
    /// new run (printed like `flows run`).
    #[command(group(ArgGroup::new("which").required(true).args(["keys", "all"])))]
    Retry {
        name: String,
        /// A retry data key (repeat for several).
        #[arg(long = "key", value_name = "RETRY_DATA_KEY")]
        keys: Vec<String>,
        /// Every open error that has retry data.
        #[arg(long)]
        all: bool,
        /// With --all: only the errors of this step.
        #[arg(long, value_name = "STEP")]
        step: Option<String>,
        /// Wait up to this many seconds for the run to end (default: do not wait).
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Mark errors resolved.
    #[command(group(ArgGroup::new("which").required(true).args(["keys", "all"])))]
    Resolve {
        name: String,
        /// A retry data key (repeat for several).
        #[arg(long = "key", value_name = "RETRY_DATA_KEY")]
        keys: Vec<String>,
        /// Every open error.
        #[arg(long)]
        all: bool,
        /// With --all: only the errors of this step.
        #[arg(long, value_name = "STEP")]
        step: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a flow with its revisions, secrets, errors and retry data; its
    /// runs stay in the history.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A line on stderr; a closed stderr is no reason to fail (or panic).
fn note(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn flow_path(name: &str) -> String {
    format!("flows/{}", segment(name))
}

/// `{"retryDataKeys": [...]}` or `{"all": true[, "step": S]}`. (`--step`
/// without `--all` is refused here: clap's `requires` counts the flag's
/// default `false` as given.)
fn selection(command: &str, keys: Vec<String>, all: bool, step: Option<String>) -> Value {
    if step.is_some() && !all {
        crate::usage_error(&["flows", command], "--step goes with --all (a retry data key names its step already)");
    }
    if all {
        let mut body = json!({"all": true});
        if let Some(step) = step {
            body["step"] = Value::String(step);
        }
        body
    } else {
        json!({"retryDataKeys": keys})
    }
}

fn is_final(run: &Value) -> bool {
    matches!(run["state"].as_str(), Some("SUCCESS" | "FAILURE" | "REVOKED"))
}

/// `?wait=N` for a request that starts a run: at most the server's limit.
fn wait_query(wait: Option<u64>) -> String {
    query(&[("wait", wait.filter(|w| *w > 0).map(|w| w.min(SERVER_WAIT_SECS).to_string()))])
}

/// Asks for the run until it ends or `wait` seconds (counted from
/// `started`) have passed.
async fn wait_for(api: &Api, mut run: Value, wait: Option<u64>, started: Instant) -> Result<Value> {
    let Some(deadline) = wait.map(|w| started + Duration::from_secs(w)) else { return Ok(run) };
    let id = s(&run["id"]);
    while !is_final(&run) && !id.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(POLL)).await;
        run = api.call(Method::GET, &format!("tasks/{}", segment(&id)), None).await?.unwrap_or_default();
    }
    Ok(run)
}

/// The flow's steps in order with their kind (`export wrapper`, `import
/// http`, `lookup wrapper`): from its document.
fn steps_of(document: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in document["pageGenerators"].as_array().into_iter().flatten() {
        out.push((s(&e["name"]), format!("export {}", s(&e["type"])).trim_end().to_string()));
    }
    for p in document["pageProcessors"].as_array().into_iter().flatten() {
        let role = if p["lookup"] == true { "lookup" } else { "import" };
        out.push((s(&p["name"]), format!("{role} {}", s(&p["type"])).trim_end().to_string()));
    }
    out
}

/// One row per step: the document's steps in order, then any counted step
/// the document does not name (a run of an older revision).
fn counter_rows(counters: &Value, steps: &[(String, String)]) -> Vec<Vec<String>> {
    let empty = serde_json::Map::new();
    let counted = counters.as_object().unwrap_or(&empty);
    let mut order: Vec<(String, String)> = steps.to_vec();
    for (name, c) in counted {
        if !order.iter().any(|(n, _)| n == name) {
            let kind = if c.get("pagesGenerated").is_some() { "export" } else { "processor" };
            order.push((name.clone(), kind.to_string()));
        }
    }
    order
        .into_iter()
        .map(|(name, kind)| {
            let c = counted.get(&name).cloned().unwrap_or(Value::Null);
            let pages = if c.get("pagesGenerated").is_some() { &c["pagesGenerated"] } else { &c["pagesProcessed"] };
            let n = |v: &Value| if v.is_null() { "0".to_string() } else { s(v) };
            vec![name, kind, n(pages), n(&c["success"]), n(&c["error"]), n(&c["ignore"])]
        })
        .collect()
}

/// Why a run failed: its `error`, or else (a flow run keeps it there) the
/// failed task's result.
fn run_error(run: &Value) -> Option<String> {
    if let Some(error) = run["error"].as_str().filter(|e| !e.is_empty()) {
        return Some(error.to_string());
    }
    if run["state"] != "FAILURE" {
        return None;
    }
    let steps = run["steps"].as_array()?;
    let failed = steps.iter().find(|t| t["state"] == "FAILURE")?;
    failed["result"].as_str().or(failed["traceback"].as_str()).filter(|e| !e.is_empty()).map(str::to_string)
}

/// Prints a flow run: its state and outcome, the error if it failed, the
/// counters per step; exits 1 when it failed or was stopped.
async fn report_run(api: &Api, flow: &str, run: &Value) -> Result<()> {
    if api.args.json {
        print_json(run);
    } else {
        let id = s(&run["id"]);
        let state = s(&run["state"]);
        match run["outcome"].as_str() {
            Some(outcome) => emit(format!("run {id} {state}: {outcome}")),
            None if is_final(run) => emit(format!("run {id} {state}")),
            None => emit(format!("run {id} {state} (still going: `junction tasks show {id}` shows it)")),
        }
        if let Some(error) = run_error(run) {
            emit(format!("error: {error}"));
        }
        // The document gives the steps' order and kinds; without it (the
        // flow was deleted meanwhile) the counters alone are shown.
        let steps = match api.call(Method::GET, &flow_path(flow), None).await {
            Ok(Some(v)) => steps_of(&v["document"]),
            _ => Vec::new(),
        };
        table(&["STEP", "KIND", "PAGES", "SUCCESS", "ERROR", "IGNORE"], counter_rows(&run["counters"], &steps));
        if run["outcome"] == "completed_with_errors" {
            note(format!("some records failed: `junction flows errors {flow}` lists them"));
        }
    }
    if matches!(run["state"].as_str(), Some("FAILURE" | "REVOKED")) {
        std::process::exit(1);
    }
    Ok(())
}

/// An error's message on one line, at most `MESSAGE_CHARS` characters.
fn short(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MESSAGE_CHARS {
        return line;
    }
    let cut: String = line.chars().take(MESSAGE_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

pub async fn flows(cmd: FlowsCommand) -> Result<()> {
    match cmd {
        FlowsCommand::Upload { file, client } => {
            if file.extension().and_then(|e| e.to_str()) != Some("json") {
                bail!("{}: a flow document is a .json file", file.display());
            }
            let text = read_file(&file)?;
            let document: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", file.display()))?;
            let api = Api::new(client)?;
            let v = api.call(Method::POST, "flows", Some(&document)).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            emit(format!("flow {} revision {}", s(&v["name"]), s(&v["revision"])));
        }
        FlowsCommand::List { client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, "flows", None).await?.unwrap_or_default();
            api.print_list(&v, &["NAME", "REVISION", "UPDATED"], |f| {
                vec![s(&f["name"]), s(&f["revision"]), local_time(&f["updated_at"], false)]
            });
        }
        FlowsCommand::Show { name, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, &flow_path(&name), None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            note(format!(
                "flow {} revision {} (created {}, updated {})",
                s(&v["name"]),
                s(&v["revision"]),
                local_time(&v["created_at"], true),
                local_time(&v["updated_at"], true)
            ));
            let offline = v["offline_connections"].as_object().cloned().unwrap_or_default();
            if offline.is_empty() {
                note("offline connections: -");
            } else {
                note("offline connections:");
                for (connection, o) in offline {
                    note(format!("  {connection}: since {}: {}", local_time(&o["since"], true), s(&o["reason"])));
                }
            }
            let last = v["last_export"].as_object().cloned().unwrap_or_default();
            if last.is_empty() {
                note("last exports: -");
            } else {
                note("last exports:");
                for (export, at) in last {
                    note(format!("  {export}: {}", local_time(&at, true)));
                }
            }
            print_json(&v["document"]);
        }
        FlowsCommand::Run { name, wait, client } => {
            let api = Api::new(client)?;
            let started = Instant::now();
            let path = format!("{}/run{}", flow_path(&name), wait_query(wait));
            let run = api.call(Method::POST, &path, None).await?.unwrap_or_default();
            let run = wait_for(&api, run, wait, started).await?;
            report_run(&api, &name, &run).await?;
        }
        FlowsCommand::Errors { name, step, all, limit, before, client } => {
            let api = Api::new(client)?;
            let q = query(&[
                ("step", step),
                ("include_resolved", all.then(|| "true".to_string())),
                ("limit", limit.map(|l| l.to_string())),
                ("before", before.map(|b| b.to_string())),
            ]);
            let v = api.call(Method::GET, &format!("{}/errors{q}", flow_path(&name)), None).await?.unwrap_or_default();
            let mut headers = vec!["OCCURRED", "STEP", "CODE", "MESSAGE", "RETRY DATA KEY"];
            if all {
                headers.push("RESOLVED");
            }
            api.print_list(&v, &headers, |e| {
                let mut row = vec![
                    local_time(&e["occurredAt"], false),
                    s(&e["step"]),
                    s(&e["code"]),
                    short(&s(&e["message"])),
                    or_dash(s(&e["retryDataKey"])),
                ];
                if all {
                    row.push(match e["resolvedAt"].as_str() {
                        Some(_) => {
                            format!("{} by {}", local_time(&e["resolvedAt"], false), or_dash(s(&e["resolvedBy"])))
                        }
                        None => "-".to_string(),
                    });
                }
                row
            });
        }
        FlowsCommand::Retry { name, keys, all, step, wait, client } => {
            let api = Api::new(client)?;
            let started = Instant::now();
            let path = format!("{}/errors/retry{}", flow_path(&name), wait_query(wait));
            let body = selection("retry", keys, all, step);
            let run = api.call(Method::POST, &path, Some(&body)).await?.unwrap_or_default();
            let run = wait_for(&api, run, wait, started).await?;
            report_run(&api, &name, &run).await?;
        }
        FlowsCommand::Resolve { name, keys, all, step, client } => {
            let api = Api::new(client)?;
            let body = selection("resolve", keys, all, step);
            let path = format!("{}/errors/resolve", flow_path(&name));
            let v = api.call(Method::POST, &path, Some(&body)).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let n = v["resolved"].as_u64().unwrap_or(0);
            emit(format!("resolved {n} error{}", if n == 1 { "" } else { "s" }));
        }
        FlowsCommand::Delete { name, client } => {
            let api = Api::new(client)?;
            api.call(Method::DELETE, &flow_path(&name), None).await?;
            emit(format!("deleted flow {name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_is_keys_or_all_with_a_step() {
        let keys = vec!["k1".into(), "k2".into()];
        assert_eq!(selection("retry", keys, false, None), json!({"retryDataKeys": ["k1", "k2"]}));
        assert_eq!(selection("retry", vec![], true, None), json!({"all": true}));
        assert_eq!(selection("resolve", vec![], true, Some("push".into())), json!({"all": true, "step": "push"}));
    }

    #[test]
    fn the_wait_sent_is_at_most_the_server_s() {
        assert_eq!(wait_query(None), "");
        assert_eq!(wait_query(Some(0)), "");
        assert_eq!(wait_query(Some(5)), "?wait=5");
        assert_eq!(wait_query(Some(120)), "?wait=30");
    }

    #[test]
    fn counters_follow_the_document_s_steps() {
        let document = json!({
            "pageGenerators": [{"name": "orders", "type": "wrapper"}],
            "pageProcessors": [{"name": "find", "type": "http", "lookup": true}, {"name": "push", "type": "wrapper"}],
        });
        let counters = json!({
            "push": {"success": 3, "error": 1, "ignore": 1, "pagesProcessed": 2},
            "orders": {"success": 5, "error": 0, "ignore": 0, "pagesGenerated": 2},
            "gone": {"success": 1, "error": 0, "ignore": 0, "pagesProcessed": 1},
        });
        let rows = counter_rows(&counters, &steps_of(&document));
        let text = |r: &[&str]| r.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(rows[0], text(&["orders", "export wrapper", "2", "5", "0", "0"]));
        assert_eq!(rows[1], text(&["find", "lookup http", "0", "0", "0", "0"]), "not counted yet");
        assert_eq!(rows[2], text(&["push", "import wrapper", "2", "3", "1", "1"]));
        assert_eq!(rows[3], text(&["gone", "processor", "1", "1", "0", "0"]));
    }

    #[test]
    fn messages_are_one_short_line() {
        assert_eq!(short("order 4\nis rejected"), "order 4 is rejected");
        let long = "x".repeat(100);
        let cut = short(&long);
        assert_eq!(cut.chars().count(), MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
    }
}
