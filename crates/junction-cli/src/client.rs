//! Client commands: HTTP calls to a Junction server, answers printed as
//! tables (or JSON with `--json`). A server error is printed as one line
//! (plus one line per field it names) and the command exits 1.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::ClientArgs;

#[derive(Subcommand, Debug)]
pub enum StepsCommand {
    /// Upload a .js or .py file as a step (a new version if the name exists).
    Upload {
        file: PathBuf,
        /// Step name; defaults to the file name without its extension.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List steps.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a step and its source.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a step.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run one step alone with parameters; prints its log and result.
    Run {
        name: String,
        #[arg(long = "param", value_name = "K=V")]
        params: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Commands shared by applications and configurations: both are JSON
/// documents.
#[derive(Subcommand, Debug)]
pub enum DocCommand {
    /// Upload a JSON document (add or replace).
    Upload {
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the stored document.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run an application (apps only): prints the run id, follows its log
    /// until it ends; exit status 0 on SUCCESS, 1 otherwise.
    Run {
        name: String,
        /// A variable for this run, `k=v` (v is JSON if it parses, else text).
        #[arg(long = "param", value_name = "K=V")]
        params: Vec<String>,
        /// Seconds to follow the log at most (default: until the run ends).
        #[arg(long)]
        wait: Option<u64>,
        #[arg(long)]
        queue: Option<String>,
        /// 10 debug, 20 info, 30 warning, 40 error.
        #[arg(long)]
        log_level: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// A run (or step task) as JSON.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The log of a run or step task.
    Log {
        id: String,
        /// Keep printing new lines until the run ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a run.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a new run with the same variables, configuration and queue.
    Replay {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ParamsCommand {
    /// Add or change one global parameter.
    Set {
        name: String,
        /// The value; read from stdin when left out (use that for secrets).
        value: Option<String>,
        /// Store it as "String (Masked)": never shown again.
        #[arg(long)]
        masked: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List global parameters (masked values are not shown).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove one global parameter.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Applications,
    Configurations,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Applications => "applications",
            Kind::Configurations => "configurations",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Kind::Applications => "application",
            Kind::Configurations => "configuration",
        }
    }
}

struct Api {
    http: reqwest::Client,
    args: ClientArgs,
}

impl Api {
    fn new(args: ClientArgs) -> Result<Api> {
        Ok(Api { http: reqwest::Client::builder().build()?, args })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
        let base = self.args.server.trim_end_matches('/');
        let url = format!("{base}/api/v1/{path}");
        let mut req = self.http.request(method, &url);
        if let Some(token) = self.args.token.as_deref().filter(|t| !t.is_empty()) {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| anyhow!("cannot reach Junction at {base}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the server's answer")?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text).map(Some).context("the server's answer is not JSON");
        }
        Err(anyhow!(describe_error(status, &text)))
    }
}

impl Api {
    /// A text GET: the body and the headers.
    async fn text(&self, path: &str) -> Result<(String, reqwest::header::HeaderMap)> {
        let base = self.args.server.trim_end_matches('/');
        let mut req = self.http.get(format!("{base}/api/v1/{path}"));
        if let Some(token) = self.args.token.as_deref().filter(|t| !t.is_empty()) {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| anyhow!("cannot reach Junction at {base}: {e}"))?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await?;
        if !status.is_success() {
            bail!(describe_error(status, &text));
        }
        Ok((text, headers))
    }

    /// Prints the log of `id` as it grows until its run ends (or
    /// `deadline`); returns the run's final state.
    async fn follow(&self, id: &str, deadline: Option<std::time::Instant>) -> Result<String> {
        let mut after = 0i64;
        loop {
            let (text, headers) = self.text(&format!("tasks/{}/log?after={after}", segment(id))).await?;
            print!("{text}");
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            after = header("x-last-line").parse().unwrap_or(after);
            let state = header("x-run-state");
            if matches!(state.as_str(), "SUCCESS" | "FAILURE" | "REVOKED") {
                // Lines stored between the two reads.
                let (rest, _) = self.text(&format!("tasks/{}/log?after={after}", segment(id))).await?;
                print!("{rest}");
                return Ok(state);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(state);
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
}

/// `k=v` pairs into a JSON object; `v` is JSON when it parses, else text.
fn params_of(pairs: &[String]) -> Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("--param {p:?}: expected K=V"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// One clear line for a server error, then one per field it names.
fn describe_error(status: StatusCode, text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let Some(err) = parsed.as_ref().and_then(|v| v.get("error")) else {
        return format!("server answered {status}: {}", text.trim());
    };
    let details = err["details"].as_array().cloned().unwrap_or_default();
    let code = err["code"].as_str().unwrap_or("error");
    if let [only] = details.as_slice() {
        return format!(
            "{code} ({}): {}: {} [{}]",
            status.as_u16(),
            s(&only["field"]),
            s(&only["message"]),
            s(&only["rule"])
        );
    }
    let mut out = format!("{code} ({}): {}", status.as_u16(), err["message"].as_str().unwrap_or_default());
    for d in &details {
        let (field, rule, message) = (d["field"].as_str(), d["rule"].as_str(), d["message"].as_str());
        if let (Some(field), Some(message)) = (field, message) {
            out.push_str(&format!("\n  {field}: {message} [{}]", rule.unwrap_or("")));
        }
    }
    out
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    println!("{t}");
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = read_file(path)?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn segment(name: &str) -> String {
    // Names are validated server-side; encoding keeps a strange one from
    // changing the route.
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub async fn steps(cmd: StepsCommand) -> Result<()> {
    match cmd {
        StepsCommand::Upload { file, name, description, client } => {
            let language = match file.extension().and_then(|e| e.to_str()) {
                Some("js") => "javascript",
                Some("py") => "python",
                _ => bail!("{}: a step file must end in .js (JavaScript) or .py (Python)", file.display()),
            };
            let name = match name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("cannot take a step name from {}; give --name", file.display()))?,
            };
            let source = read_file(&file)?;
            let api = Api::new(client)?;
            let body = json!({"name": name, "language": language, "data": source, "description": description});
            let v = api.call(Method::POST, "steps", Some(&body)).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
            } else {
                println!(
                    "step {} version {} ({}, sha256 {})",
                    s(&v["name"]),
                    s(&v["version"]),
                    s(&v["language"]),
                    s(&v["sha256"])
                );
            }
        }
        StepsCommand::List { client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, "steps", None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let rows = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![s(&r["name"]), s(&r["language"]), s(&r["version"]), s(&r["updated_at"]), s(&r["description"])]
                })
                .collect();
            table(&["NAME", "LANGUAGE", "VERSION", "UPDATED", "DESCRIPTION"], rows);
        }
        StepsCommand::Show { name, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, &format!("steps/{}", segment(&name)), None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            println!("name:      {}", s(&v["name"]));
            println!("language:  {}", s(&v["language"]));
            println!("version:   {}", s(&v["version"]));
            println!("sha256:    {}", s(&v["sha256"]));
            println!("created:   {}", s(&v["created_at"]));
            println!("---");
            print!("{}", s(&v["data"]));
        }
        StepsCommand::Delete { name, client } => {
            let api = Api::new(client)?;
            api.call(Method::DELETE, &format!("steps/{}", segment(&name)), None).await?;
            println!("deleted step {name}");
        }
        StepsCommand::Run { name, params, client } => {
            let api = Api::new(client)?;
            let mut body = params_of(&params)?;
            body.insert("name".into(), Value::String(name));
            let v = api.call(Method::POST, "steps/run?wait=30", Some(&Value::Object(body))).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            for line in v["logs"].as_array().into_iter().flatten() {
                println!("{}", s(line));
            }
            if !v["output"].is_null() {
                println!("output: {}", v["output"]);
            }
            println!("{} {}", s(&v["state"]), s(&v["result"]));
            if v["state"] != "SUCCESS" {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

pub async fn documents(kind: Kind, cmd: DocCommand) -> Result<()> {
    match cmd {
        DocCommand::Upload { file, client } => {
            if file.extension().and_then(|e| e.to_str()) != Some("json") {
                bail!("{}: an {} must be a .json file", file.display(), kind.singular());
            }
            let body = read_json(&file)?;
            let api = Api::new(client)?;
            let v = api.call(Method::POST, kind.path(), Some(&body)).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            match kind {
                Kind::Applications => println!("application {} revision {}", s(&v["name"]), s(&v["revision"])),
                Kind::Configurations => println!("configuration {} stored", s(&v["name"])),
            }
            for w in v["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}: {}", s(&w["field"]), s(&w["message"]));
            }
        }
        DocCommand::List { client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, kind.path(), None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let items = v.as_array().into_iter().flatten();
            match kind {
                Kind::Applications => table(
                    &["NAME", "FRIENDLY NAME", "STEPS", "REVISION", "UPDATED"],
                    items
                        .map(|r| {
                            vec![
                                s(&r["name"]),
                                s(&r["friendly_name"]),
                                s(&r["steps"]),
                                s(&r["revision"]),
                                s(&r["updated_at"]),
                            ]
                        })
                        .collect(),
                ),
                Kind::Configurations => table(
                    &["NAME", "FRIENDLY NAME", "ENTRIES", "ENCRYPTED", "UPDATED"],
                    items
                        .map(|r| {
                            vec![
                                s(&r["name"]),
                                s(&r["friendly_name"]),
                                s(&r["entries"]),
                                s(&r["encrypted_entries"]),
                                s(&r["updated_at"]),
                            ]
                        })
                        .collect(),
                ),
            }
        }
        DocCommand::Show { name, client } => {
            let api = Api::new(client)?;
            let v =
                api.call(Method::GET, &format!("{}/{}", kind.path(), segment(&name)), None).await?.unwrap_or_default();
            print_json(&v);
        }
        DocCommand::Delete { name, client } => {
            let api = Api::new(client)?;
            api.call(Method::DELETE, &format!("{}/{}", kind.path(), segment(&name)), None).await?;
            println!("deleted {} {name}", kind.singular());
        }
        DocCommand::Run { name, params, wait, queue, log_level, client } => {
            if !matches!(kind, Kind::Applications) {
                bail!("only applications run");
            }
            let api = Api::new(client)?;
            let body = json!({"params": params_of(&params)?, "queue": queue, "log_level": log_level});
            let run = api
                .call(Method::POST, &format!("applications/{}/run", segment(&name)), Some(&body))
                .await?
                .unwrap_or_default();
            let id = s(&run["id"]);
            eprintln!("run {id}");
            let deadline = wait.map(|w| std::time::Instant::now() + std::time::Duration::from_secs(w));
            let state = api.follow(&id, deadline).await?;
            eprintln!("run {id} {}", if state.is_empty() { "still running" } else { &state });
            if state != "SUCCESS" {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

pub async fn tasks(cmd: TasksCommand) -> Result<()> {
    match cmd {
        TasksCommand::Show { id, client } => {
            let api = Api::new(client)?;
            print_json(&api.call(Method::GET, &format!("tasks/{}", segment(&id)), None).await?.unwrap_or_default());
        }
        TasksCommand::Log { id, follow, client } => {
            let api = Api::new(client)?;
            if follow {
                api.follow(&id, None).await?;
            } else {
                print!("{}", api.text(&format!("tasks/{}/log", segment(&id))).await?.0);
            }
        }
        TasksCommand::Revoke { id, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::POST, &format!("tasks/{}/revoke", segment(&id)), None).await?.unwrap_or_default();
            println!("run {} {}", s(&v["id"]), s(&v["state"]));
        }
        TasksCommand::Replay { id, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::POST, &format!("tasks/{}/replay", segment(&id)), None).await?.unwrap_or_default();
            println!("{}", s(&v["id"]));
        }
    }
    Ok(())
}

pub async fn params(cmd: ParamsCommand) -> Result<()> {
    match cmd {
        ParamsCommand::Set { name, value, masked, client } => {
            let value = match value {
                Some(v) => v,
                // Keeps a masked value out of argv (ps, shell history).
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the value from stdin")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let api = Api::new(client)?;
            let kind = if masked { "masked" } else { "string" };
            let body = json!({"type": kind, "value": value});
            let v = api.call(Method::PUT, &format!("global-parameters/{}", segment(&name)), Some(&body)).await?;
            if api.args.json {
                print_json(&v.unwrap_or_default());
                return Ok(());
            }
            println!("set {kind} parameter {name}");
        }
        ParamsCommand::List { client } => {
            let api = Api::new(client)?;
            let list = current_params(&api).await?;
            if api.args.json {
                print_json(&Value::Array(list));
                return Ok(());
            }
            let rows = list
                .iter()
                .map(|p| {
                    let value = if p["type"] == "masked" { "••••••".to_string() } else { s(&p["value"]) };
                    vec![s(&p["name"]), s(&p["type"]), value]
                })
                .collect();
            table(&["NAME", "TYPE", "VALUE"], rows);
        }
        ParamsCommand::Delete { name, client } => {
            let api = Api::new(client)?;
            api.call(Method::DELETE, &format!("global-parameters/{}", segment(&name)), None).await?;
            println!("deleted parameter {name}");
        }
    }
    Ok(())
}

/// The stored list; masked values come back as `null`.
async fn current_params(api: &Api) -> Result<Vec<Value>> {
    let v = api.call(Method::GET, "global-parameters", None).await?.unwrap_or_default();
    Ok(v.as_array().cloned().unwrap_or_default())
}
