//! Client commands: HTTP calls to a Junction server, answers printed as
//! tables (or JSON with `--json`). A server error is printed as one line
//! (plus one line per field it names) and the command exits 1.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use junction_core::cicd::STATUSES;
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
    /// List the stored documents.
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
    /// Delete a stored document.
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
    /// Run an application as an automated job (apps only; needs the server
    /// setting automated_jobs_enabled): prints the run id and state.
    Trigger {
        name: String,
        /// A JSON object: what triggered the job (the script's
        /// args.plutoraValues, e.g. {"Build": {...}}).
        #[arg(long, value_name = "FILE")]
        context_file: Option<PathBuf>,
        /// A new value for one of the job's parameters, `k=v` (v is JSON if
        /// it parses, else text).
        #[arg(long = "arg", value_name = "K=V", value_parser = pair)]
        args: Vec<String>,
        /// Follow the log until the run ends; exit status 0 on SUCCESS, 1
        /// otherwise.
        #[arg(long)]
        follow: bool,
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

pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) args: ClientArgs,
}

impl Api {
    pub(crate) fn new(args: ClientArgs) -> Result<Api> {
        Ok(Api { http: reqwest::Client::builder().build()?, args })
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        let (status, _, text) = self.send(req).await?;
        if status == StatusCode::NO_CONTENT || text.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text).map(Some).context("the server's answer is not JSON")
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let base = self.args.server.trim_end_matches('/');
        let req = self.http.request(method, format!("{base}/api/v1/{path}"));
        match self.args.token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends `req`; an answer that is not 2xx becomes the one-line error.
    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, String)> {
        let base = self.args.server.trim_end_matches('/');
        let resp = req.send().await.map_err(|e| anyhow!("cannot reach Junction at {base}: {e}"))?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.context("reading the server's answer")?;
        if !status.is_success() {
            bail!(describe_error(status, &text));
        }
        Ok((status, headers, text))
    }
}

impl Api {
    /// A text GET: the body and the headers.
    async fn text(&self, path: &str) -> Result<(String, reqwest::header::HeaderMap)> {
        let (_, headers, text) = self.send(self.request(Method::GET, path)).await?;
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

    /// Prints the log of `id` until its run ends (or `deadline`), then its
    /// state on stderr; exits 1 unless the run succeeded.
    async fn follow_to_end(&self, id: &str, deadline: Option<std::time::Instant>) -> Result<()> {
        let state = self.follow(id, deadline).await?;
        eprintln!("run {id} {}", if state.is_empty() { "still running" } else { &state });
        if state != "SUCCESS" {
            std::process::exit(1);
        }
        Ok(())
    }
}

/// `k=v` pairs into a JSON object; `v` is JSON when it parses, else text.
/// `flag` names the option in the error.
pub(crate) fn params_of(flag: &str, pairs: &[String]) -> Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("{flag} {p:?}: expected K=V"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// One clear line for a server error, then one per field it names.
pub(crate) fn describe_error(status: StatusCode, text: &str) -> String {
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

pub(crate) fn print_json(v: &Value) {
    emit(serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints `text` and a newline on stdout. When the reader has gone away
/// (`junction ... | head`), the command ends quietly with status 0 instead
/// of panicking the way `println!` does.
pub(crate) fn emit(text: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

impl Api {
    /// An answer that is a list: as JSON with `--json`, else a table with
    /// one `row` per item.
    pub(crate) fn print_list(&self, v: &Value, headers: &[&str], row: impl Fn(&Value) -> Vec<String>) {
        if self.args.json {
            print_json(v);
        } else {
            table(headers, v.as_array().into_iter().flatten().map(row).collect());
        }
    }
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    emit(t);
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = read_file(path)?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

pub(crate) fn segment(name: &str) -> String {
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
            api.print_list(&v, &["NAME", "LANGUAGE", "VERSION", "UPDATED", "DESCRIPTION"], |r| {
                vec![s(&r["name"]), s(&r["language"]), s(&r["version"]), s(&r["updated_at"]), s(&r["description"])]
            });
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
            let mut body = params_of("--param", &params)?;
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
            let body = json!({"params": params_of("--param", &params)?, "queue": queue, "log_level": log_level});
            let run = api
                .call(Method::POST, &format!("applications/{}/run", segment(&name)), Some(&body))
                .await?
                .unwrap_or_default();
            let id = s(&run["id"]);
            eprintln!("run {id}");
            let deadline = wait.map(|w| std::time::Instant::now() + std::time::Duration::from_secs(w));
            api.follow_to_end(&id, deadline).await?;
        }
        DocCommand::Trigger { name, context_file, args, follow, client } => {
            if !matches!(kind, Kind::Applications) {
                bail!("only applications run");
            }
            let context = match &context_file {
                Some(path) => match read_json(path)? {
                    Value::Object(map) => map,
                    other => bail!("{}: the context must be a JSON object, not {}", path.display(), kind_of(&other)),
                },
                None => serde_json::Map::new(),
            };
            let body = json!({"context": context, "arguments": params_of("--arg", &args)?});
            let api = Api::new(client)?;
            let run = api
                .call(Method::POST, &format!("applications/{}/trigger", segment(&name)), Some(&body))
                .await?
                .unwrap_or_default();
            let id = s(&run["id"]);
            if follow {
                eprintln!("run {id}");
                api.follow_to_end(&id, None).await?;
            } else if api.args.json {
                print_json(&run);
            } else {
                eprintln!("run {id} {}", s(&run["state"]));
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
            api.print_list(&Value::Array(list), &["NAME", "TYPE", "VALUE"], |p| {
                let value = if p["type"] == "masked" { "••••••".to_string() } else { s(&p["value"]) };
                vec![s(&p["name"]), s(&p["type"]), value]
            });
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

/// `junction jobs` alone lists the grid, like `junction jobs list`.
#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: Option<JobsCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// The jobs grid (the default): trigger, schedule, last and next run.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A job's runs, newest first.
    History {
        name: String,
        /// Runs to show (1-200; the server's default is 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Newest runs to skip.
        #[arg(long)]
        offset: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop every running instance of a job.
    Stop {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Schedule an application: `--every 2h` (every 2 hours from now on),
    /// `--every 2h --start 2026-11-23T09:00` (from that time) or `--cron EXPR`.
    #[command(group(ArgGroup::new("rule").required(true).args(["every", "cron"])))]
    Add {
        /// The application (job) to run.
        app: String,
        /// How often: a number and a unit, s m h d w (90s, 5m, 2h, 1d, 2w), or
        /// mo (months, with --start only).
        #[arg(long, value_name = "DURATION", value_parser = parse_every)]
        every: Option<Every>,
        /// With --every: the first run, a date and time in the schedule's
        /// time zone (2026-11-23T09:00); then one every DURATION.
        #[arg(long, value_name = "DATE-TIME", requires = "every", conflicts_with = "cron")]
        start: Option<String>,
        /// A 5-field cron expression ('*/5 * * * *') or a macro (@daily).
        #[arg(long, value_name = "EXPR")]
        cron: Option<String>,
        /// IANA time zone the schedule reads its times in (default UTC).
        #[arg(long, value_name = "ZONE")]
        tz: Option<String>,
        /// A variable for the scheduled runs, `k=v` (v is JSON if it parses,
        /// else text).
        #[arg(long = "param", value_name = "K=V", value_parser = pair)]
        params: Vec<String>,
        /// Your own id for the entry (spec 004's entry_id), kept with it.
        #[arg(long)]
        entry_id: Option<String>,
        /// Store the schedule turned off.
        #[arg(long)]
        disabled: bool,
        /// Replace the schedule with this id (or create it under this id).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List schedules.
    List {
        /// Only this application's schedules.
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One schedule as JSON.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a schedule.
    Delete {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Turn on every schedule of a job (it waits for its next tick).
    Enable {
        app: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Turn off every schedule of a job.
    Disable {
        app: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// Print the server settings.
    Show {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change one setting, e.g. `settings set automated_jobs_enabled true`.
    Set {
        key: String,
        /// The value (JSON if it parses, else text).
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A `--every` value: a positive count of a unit.
#[derive(Clone, Debug)]
pub struct Every {
    text: String,
    count: i64,
    unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl Unit {
    const NAMES: [(&'static str, Unit); 24] = [
        ("s", Unit::Second),
        ("sec", Unit::Second),
        ("secs", Unit::Second),
        ("second", Unit::Second),
        ("seconds", Unit::Second),
        ("m", Unit::Minute),
        ("min", Unit::Minute),
        ("mins", Unit::Minute),
        ("minute", Unit::Minute),
        ("minutes", Unit::Minute),
        ("h", Unit::Hour),
        ("hr", Unit::Hour),
        ("hrs", Unit::Hour),
        ("hour", Unit::Hour),
        ("hours", Unit::Hour),
        ("d", Unit::Day),
        ("day", Unit::Day),
        ("days", Unit::Day),
        ("w", Unit::Week),
        ("week", Unit::Week),
        ("weeks", Unit::Week),
        ("mo", Unit::Month),
        ("month", Unit::Month),
        ("months", Unit::Month),
    ];

    /// Fixed length in seconds (a month has none).
    fn seconds(self) -> Option<i64> {
        match self {
            Unit::Second => Some(1),
            Unit::Minute => Some(60),
            Unit::Hour => Some(3600),
            Unit::Day => Some(86_400),
            Unit::Week => Some(7 * 86_400),
            Unit::Month => None,
        }
    }

    /// The `interval` schedule's frequency (seconds have none).
    fn frequency(self) -> Option<&'static str> {
        match self {
            Unit::Second => None,
            Unit::Minute => Some("Minute"),
            Unit::Hour => Some("Hourly"),
            Unit::Day => Some("Daily"),
            Unit::Week => Some("Weekly"),
            Unit::Month => Some("Monthly"),
        }
    }
}

impl Every {
    /// The length in seconds; `None` for months (or one too long).
    pub(crate) fn seconds(&self) -> Option<i64> {
        self.unit.seconds().and_then(|unit| self.count.checked_mul(unit))
    }
}

pub(crate) fn parse_every(text: &str) -> Result<Every, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = (&trimmed[..split], trimmed[split..].trim());
    let example = "a number and a unit, e.g. 90s, 5m, 2h, 1d, 2w or 1mo";
    if digits.is_empty() || unit.is_empty() {
        return Err(format!("expected {example}"));
    }
    let count: i64 = digits.parse().map_err(|_| format!("{digits} is too large"))?;
    if count == 0 {
        return Err("must be at least 1 (e.g. 2h)".to_string());
    }
    let unit = Unit::NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|(_, u)| *u)
        .ok_or_else(|| format!("unknown unit {unit:?}: use s, m, h, d, w or mo"))?;
    Ok(Every { text: trimmed.to_string(), count, unit })
}

/// Checks a `k=v` option at parse time (a usage error otherwise).
pub(crate) fn pair(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(text.to_string()),
        _ => Err("expected K=V".to_string()),
    }
}

/// The `schedule` object of a `schedule add`, or a usage error.
fn schedule_rule(every: Option<Every>, start: Option<String>, cron: Option<String>) -> Value {
    const ADD: [&str; 2] = ["schedule", "add"];
    match (every, start, cron) {
        (Some(every), Some(start), None) => {
            let Some(frequency) = every.unit.frequency() else {
                crate::usage_error(
                    &ADD,
                    format!("--every {}: seconds only work without --start; use minutes or more", every.text),
                );
            };
            json!({
                "schedule_type": "interval",
                "schedule_info": {"frequency": frequency, "repeat_every": every.count, "start_on": start},
            })
        }
        (Some(every), None, None) => {
            let Some(unit) = every.unit.seconds() else {
                crate::usage_error(
                    &ADD,
                    format!("--every {}: months have no fixed length; give --start DATE-TIME too", every.text),
                );
            };
            let Some(seconds) = every.count.checked_mul(unit) else {
                crate::usage_error(&ADD, format!("--every {}: too long", every.text));
            };
            json!({"schedule_type": "frequency", "schedule_info": {"run_every": seconds}})
        }
        (None, None, Some(expression)) => json!({"schedule_type": "cron", "schedule_info": {"expression": expression}}),
        _ => crate::usage_error(&ADD, "give exactly one of --every DURATION [--start DATE-TIME] or --cron EXPR"),
    }
}

/// A server timestamp in this machine's time zone, e.g. `2026-11-23 09:00:00`
/// (with the zone's abbreviation when `zone`); "-" for null.
pub(crate) fn local_time(v: &Value, zone: bool) -> String {
    let Some(text) = v.as_str() else { return "-".to_string() };
    let format = if zone { "%Y-%m-%d %H:%M:%S %Z" } else { "%Y-%m-%d %H:%M:%S" };
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => t.to_zoned(jiff::tz::TimeZone::system()).strftime(format).to_string(),
        Err(_) => text.to_string(),
    }
}

/// A run's length for people: "0.4 s", "1.2 s", "3 min", "2 h 5 min", "3 d 4 h".
fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{} s", tenths / 10, tenths % 10);
    }
    let minutes = (ms + 30_000) / 60_000;
    if minutes < 60 {
        return format!("{minutes} min");
    }
    if minutes < 24 * 60 {
        return match minutes % 60 {
            0 => format!("{} h", minutes / 60),
            m => format!("{} h {m} min", minutes / 60),
        };
    }
    let hours = (ms + 1_800_000) / 3_600_000;
    match hours % 24 {
        0 => format!("{} d", hours / 24),
        h => format!("{} d {h} h", hours / 24),
    }
}

/// `text` or "-" when empty.
pub(crate) fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The next fire of a schedule: its time and how far off, or why there is none.
fn next_fire(sched: &Value, zone: bool) -> String {
    match sched["next_fire_at"].as_str() {
        Some(_) if sched["enabled"] != false => {
            format!("{} ({})", local_time(&sched["next_fire_at"], zone), s(&sched["next_run"]))
        }
        _ => or_dash(s(&sched["next_run"])),
    }
}

pub async fn jobs(args: JobsArgs) -> Result<()> {
    match args.command.unwrap_or(JobsCommand::List { client: args.client }) {
        JobsCommand::List { client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, "jobs", None).await?.unwrap_or_default();
            api.print_list(&v, &["JOB NAME", "TRIGGER", "SCHEDULE", "LAST RUN", "NEXT RUN", "RUNNING"], |job| {
                let last = &job["last_run"];
                let last = if last.is_null() {
                    "-".to_string()
                } else {
                    let at = if last["started_at"].is_null() { &last["created_at"] } else { &last["started_at"] };
                    format!("{} {}", local_time(at, false), s(&last["state"]))
                };
                vec![
                    s(&job["name"]),
                    s(&job["trigger"]),
                    or_dash(s(&job["schedule"])),
                    last,
                    or_dash(s(&job["next_run"])),
                    s(&job["running"]),
                ]
            });
        }
        JobsCommand::History { name, limit, offset, client } => {
            let api = Api::new(client)?;
            let q = query(&[("limit", limit.map(|x| x.to_string())), ("offset", offset.map(|x| x.to_string()))]);
            let path = format!("jobs/{}/history{q}", segment(&name));
            let v = api.call(Method::GET, &path, None).await?.unwrap_or_default();
            api.print_list(&v, &["RUN", "TRIGGER", "START", "DURATION", "STATE"], |run| {
                let trigger = match run["triggered_by"].as_str() {
                    Some(by) => format!("{} by {by}", s(&run["trigger"])),
                    None => s(&run["trigger"]),
                };
                let started = if run["started_at"].is_null() { &run["created_at"] } else { &run["started_at"] };
                let duration = run["duration_ms"].as_i64().map(human_duration).unwrap_or_else(|| "-".to_string());
                vec![s(&run["id"]), trigger, local_time(started, false), duration, s(&run["state"])]
            });
        }
        JobsCommand::Stop { name, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::POST, &format!("jobs/{}/stop", segment(&name)), None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let stopped = v["stopped"].as_array().cloned().unwrap_or_default();
            if stopped.is_empty() {
                println!("no running instance of {name}");
            }
            for id in stopped {
                println!("stopped run {}", s(&id));
            }
        }
    }
    Ok(())
}

pub async fn schedule(cmd: ScheduleCommand) -> Result<()> {
    match cmd {
        ScheduleCommand::Add { app, every, start, cron, tz, params, entry_id, disabled, id, client } => {
            let mut body = json!({
                "application_id": app,
                "schedule": schedule_rule(every, start, cron),
                "params": params_of("--param", &params)?,
                "enabled": !disabled,
            });
            for (key, value) in [("timezone", tz), ("entry_id", entry_id), ("id", id)] {
                if let Some(value) = value {
                    body[key] = Value::String(value);
                }
            }
            let api = Api::new(client)?;
            let v = api.call(Method::POST, "schedule", Some(&body)).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            println!("schedule {}: {}", s(&v["id"]), s(&v["description"]));
            println!("next fire: {}", next_fire(&v, true));
        }
        ScheduleCommand::List { app, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, "schedule", None).await?.unwrap_or_default();
            let list: Vec<Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter(|sched| app.as_deref().is_none_or(|a| sched["application_id"] == a))
                .cloned()
                .collect();
            api.print_list(
                &Value::Array(list),
                &["ID", "JOB", "SCHEDULE", "TIME ZONE", "ENABLED", "NEXT FIRE", "LAST ERROR"],
                |sched| {
                    vec![
                        s(&sched["id"]),
                        s(&sched["application_id"]),
                        s(&sched["description"]),
                        s(&sched["timezone"]),
                        s(&sched["enabled"]),
                        next_fire(sched, false),
                        or_dash(s(&sched["last_error"])),
                    ]
                },
            );
        }
        ScheduleCommand::Show { id, client } => {
            let api = Api::new(client)?;
            print_json(&api.call(Method::GET, &format!("schedule/{}", segment(&id)), None).await?.unwrap_or_default());
        }
        ScheduleCommand::Delete { id, client } => {
            let api = Api::new(client)?;
            api.call(Method::DELETE, &format!("schedule/{}", segment(&id)), None).await?;
            println!("deleted schedule {id}");
        }
        ScheduleCommand::Enable { app, client } => set_job_enabled(app, true, client).await?,
        ScheduleCommand::Disable { app, client } => set_job_enabled(app, false, client).await?,
    }
    Ok(())
}

/// The grid's Enabled toggle: every schedule of the job on or off.
async fn set_job_enabled(app: String, enabled: bool, client: ClientArgs) -> Result<()> {
    let api = Api::new(client)?;
    let body = json!({"enabled": enabled});
    let job = api.call(Method::PATCH, &format!("jobs/{}", segment(&app)), Some(&body)).await?.unwrap_or_default();
    if api.args.json {
        print_json(&job);
    } else if enabled {
        println!("job {app}: schedule enabled, next run {}", or_dash(s(&job["next_run"])));
    } else {
        println!("job {app}: schedule disabled");
    }
    Ok(())
}

pub async fn settings(cmd: SettingsCommand) -> Result<()> {
    match cmd {
        SettingsCommand::Show { client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, "settings", None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            for (key, value) in v.as_object().into_iter().flatten() {
                println!("{key}: {}", s(value));
            }
        }
        SettingsCommand::Set { key, value, client } => {
            let api = Api::new(client)?;
            let mut current = api.call(Method::GET, "settings", None).await?.unwrap_or_default();
            let Some(map) = current.as_object_mut() else { bail!("the server's settings are not a JSON object") };
            if !map.contains_key(&key) {
                let known: Vec<&str> = map.keys().map(String::as_str).collect();
                bail!("unknown setting {key:?} (settings: {})", known.join(", "));
            }
            let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            map.insert(key.clone(), value);
            let v = api.call(Method::PUT, "settings", Some(&current)).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            println!("{key}: {}", s(&v[&key]));
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum CompaniesCommand {
    /// Create a company (administrators); prints its id.
    Create {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List companies.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a company's Custom CD services.
    Services {
        company_id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a Custom CD service to a company; its id is the `service_id` the
    /// company's agent reports jobs with.
    AddService {
        company_id: i64,
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The CI/CD jobs a company reported, newest start first.
    Jobs {
        company_id: i64,
        /// Only this service's jobs.
        #[arg(long, value_name = "ID")]
        service: Option<i64>,
        #[arg(long, value_parser = PossibleValuesParser::new(STATUSES))]
        status: Option<String>,
        /// Only jobs of this repository (its repo_id or repo_name).
        #[arg(long)]
        repo: Option<String>,
        /// Jobs to show (1-500; the server's default is 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Newest jobs to skip.
        #[arg(long)]
        offset: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TriggersCommand {
    /// List event triggers.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One trigger as JSON.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add (or replace, by name) a trigger: when a CI/CD job matching every
    /// given filter arrives, run APP as an automated job with the job as its
    /// args.plutoraValues. A filter given several times accepts any of its
    /// values. Runs start only while the server setting
    /// automated_jobs_enabled is on.
    Add {
        name: String,
        /// The application (job) to run.
        #[arg(long)]
        app: String,
        /// Only this company's jobs (default: any company's).
        #[arg(long, value_name = "ID")]
        company: Option<i64>,
        /// Only jobs of this service (repeat for several).
        #[arg(long = "service", value_name = "ID")]
        services: Vec<i64>,
        /// Only jobs with this status (repeat for several).
        #[arg(long = "status", value_name = "STATUS", value_parser = PossibleValuesParser::new(STATUSES))]
        statuses: Vec<String>,
        /// Only jobs of this job_type (repeat for several).
        #[arg(long = "job-type", value_name = "TYPE")]
        job_types: Vec<String>,
        /// Only jobs of this repository, its repo_id or repo_name (repeat for
        /// several).
        #[arg(long = "repo", value_name = "REPO")]
        repos: Vec<String>,
        /// A value for one of the application's parameters, `k=v` (v is JSON
        /// if it parses, else text).
        #[arg(long = "arg", value_name = "K=V", value_parser = pair)]
        args: Vec<String>,
        /// Store the trigger turned off.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a trigger.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A query string (`?k=v&...`, or nothing) of the given values.
pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", segment(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Epoch seconds as `2024-01-01 10:20:30` (UTC); the number itself if out
/// of range.
fn utc_seconds(v: &Value) -> String {
    match v.as_i64().map(jiff::Timestamp::from_second) {
        Some(Ok(t)) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        _ => or_dash(s(v)),
    }
}

/// A trigger's filter for a table: `status=Failed|Succeeded service_id=2`.
fn filter_text(filter: &Value) -> String {
    let parts: Vec<String> = filter
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| match v {
            Value::Array(items) => format!("{k}={}", items.iter().map(s).collect::<Vec<_>>().join("|")),
            one => format!("{k}={}", s(one)),
        })
        .collect();
    or_dash(parts.join(" "))
}

/// A filter's values: none, one value, or a list of them.
fn filter_values(values: Vec<Value>) -> Option<Value> {
    match values.len() {
        0 => None,
        1 => values.into_iter().next(),
        _ => Some(Value::Array(values)),
    }
}

pub async fn companies(cmd: CompaniesCommand) -> Result<()> {
    match cmd {
        CompaniesCommand::Create { name, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::POST, "companies", Some(&json!({"name": name}))).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            println!("company {} {}", s(&v["id"]), s(&v["name"]));
        }
        CompaniesCommand::List { client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, "companies", None).await?.unwrap_or_default();
            api.print_list(&v, &["ID", "NAME", "CREATED"], |c| {
                vec![s(&c["id"]), s(&c["name"]), local_time(&c["created_at"], false)]
            });
        }
        CompaniesCommand::Services { company_id, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, &format!("companies/{company_id}/cicd_services"), None).await?;
            let v = v.unwrap_or_default();
            api.print_list(&v, &["ID", "NAME", "TYPE", "CREATED"], |c| {
                vec![s(&c["id"]), s(&c["name"]), s(&c["type"]), local_time(&c["created_at"], false)]
            });
        }
        CompaniesCommand::AddService { company_id, name, client } => {
            let api = Api::new(client)?;
            let body = json!({"name": name});
            let v = api.call(Method::POST, &format!("companies/{company_id}/cicd_services"), Some(&body)).await?;
            let v = v.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            println!(
                "service {} of company {}: {} ({})",
                s(&v["id"]),
                s(&v["company_id"]),
                s(&v["name"]),
                s(&v["type"])
            );
        }
        CompaniesCommand::Jobs { company_id, service, status, repo, limit, offset, client } => {
            let api = Api::new(client)?;
            let q = query(&[
                ("service_id", service.map(|x| x.to_string())),
                ("status", status),
                ("repo", repo),
                ("limit", limit.map(|x| x.to_string())),
                ("offset", offset.map(|x| x.to_string())),
            ]);
            let v = api.call(Method::GET, &format!("companies/{company_id}/cicd_jobs{q}"), None).await?;
            let v = v.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            // Service names, when this token may read them.
            let names: std::collections::HashMap<i64, String> =
                match api.call(Method::GET, &format!("companies/{company_id}/cicd_services"), None).await {
                    Ok(Some(Value::Array(list))) => {
                        list.iter().filter_map(|x| Some((x["id"].as_i64()?, s(&x["name"])))).collect()
                    }
                    _ => Default::default(),
                };
            let rows = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|j| {
                    let service = match j["service_id"].as_i64().and_then(|id| names.get(&id)) {
                        Some(name) => format!("{} {name}", s(&j["service_id"])),
                        None => s(&j["service_id"]),
                    };
                    let repo = match (j["repo_name"].as_str(), j["repo_id"].as_str()) {
                        (Some(name), Some(id)) => format!("{name} ({id})"),
                        (Some(one), None) | (None, Some(one)) => one.to_string(),
                        (None, None) => "-".to_string(),
                    };
                    vec![
                        s(&j["id"]),
                        s(&j["job_id"]),
                        service,
                        s(&j["status"]),
                        repo,
                        utc_seconds(&j["job_start_time"]),
                        s(&j["job_duration"]),
                        s(&j["triggered_by"]),
                    ]
                })
                .collect();
            table(&["ID", "JOB ID", "SERVICE", "STATUS", "REPO", "START (UTC)", "DURATION S", "TRIGGERED BY"], rows);
        }
    }
    Ok(())
}

pub async fn triggers(cmd: TriggersCommand) -> Result<()> {
    match cmd {
        TriggersCommand::List { client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, "triggers", None).await?.unwrap_or_default();
            api.print_list(&v, &["NAME", "JOB", "EVENT", "COMPANY", "FILTER", "ARGUMENTS", "ENABLED"], |t| {
                let arguments: Vec<String> =
                    t["arguments"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", s(v))).collect();
                vec![
                    s(&t["name"]),
                    s(&t["application"]),
                    s(&t["event"]),
                    if t["company_id"].is_null() { "any".to_string() } else { s(&t["company_id"]) },
                    filter_text(&t["filter"]),
                    or_dash(arguments.join(" ")),
                    s(&t["enabled"]),
                ]
            });
        }
        TriggersCommand::Show { name, client } => {
            let api = Api::new(client)?;
            print_json(
                &api.call(Method::GET, &format!("triggers/{}", segment(&name)), None).await?.unwrap_or_default(),
            );
        }
        TriggersCommand::Add { name, app, company, services, statuses, job_types, repos, args, disabled, client } => {
            let mut filter = serde_json::Map::new();
            let given = [
                ("service_id", services.into_iter().map(Value::from).collect::<Vec<_>>()),
                ("status", statuses.into_iter().map(Value::from).collect()),
                ("job_type", job_types.into_iter().map(Value::from).collect()),
                ("repo", repos.into_iter().map(Value::from).collect()),
            ];
            for (key, values) in given {
                if let Some(v) = filter_values(values) {
                    filter.insert(key.to_string(), v);
                }
            }
            let body = json!({
                "name": name,
                "application": app,
                "event": "cicd_job",
                "company_id": company,
                "filter": filter,
                "arguments": params_of("--arg", &args)?,
                "enabled": !disabled,
            });
            let api = Api::new(client)?;
            let v = api.call(Method::POST, "triggers", Some(&body)).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let done = if v["created_at"] == v["updated_at"] { "added" } else { "replaced" };
            let scope = if v["company_id"].is_null() {
                "any company".to_string()
            } else {
                format!("company {}", s(&v["company_id"]))
            };
            let filter = match filter_text(&v["filter"]).as_str() {
                "-" => String::new(),
                f => format!(" where {f}"),
            };
            let off = if v["enabled"] == false { " (disabled)" } else { "" };
            println!(
                "trigger {} {done}: runs {} on CI/CD jobs of {scope}{filter}{off}",
                s(&v["name"]),
                s(&v["application"])
            );
            // Say so when the trigger cannot start anything yet.
            if let Ok(Some(settings)) = api.call(Method::GET, "settings", None).await {
                if settings["automated_jobs_enabled"] == false {
                    eprintln!(
                        "note: automated jobs are off; triggers start nothing until an admin runs \
                         `junction settings set automated_jobs_enabled true`"
                    );
                }
            }
        }
        TriggersCommand::Delete { name, client } => {
            let api = Api::new(client)?;
            api.call(Method::DELETE, &format!("triggers/{}", segment(&name)), None).await?;
            println!("deleted trigger {name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reads_a_count_and_a_unit() {
        let every = parse_every("90s").unwrap();
        assert_eq!((every.count, every.unit), (90, Unit::Second));
        assert_eq!(parse_every("2H").unwrap().unit, Unit::Hour);
        assert_eq!(parse_every("3 months").unwrap().unit, Unit::Month);
        assert_eq!(parse_every("1mo").unwrap().unit, Unit::Month);
        for bad in ["0h", "5x", "h", "2", "", "-2h", "1.5h", "99999999999999999999h"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_becomes_a_frequency_or_an_interval() {
        let rule = schedule_rule(parse_every("2w").ok(), None, None);
        assert_eq!(rule, json!({"schedule_type": "frequency", "schedule_info": {"run_every": 1_209_600}}));
        let rule = schedule_rule(parse_every("3mo").ok(), Some("2026-01-31T10:00".into()), None);
        assert_eq!(
            rule,
            json!({"schedule_type": "interval",
                   "schedule_info": {"frequency": "Monthly", "repeat_every": 3, "start_on": "2026-01-31T10:00"}})
        );
        let rule = schedule_rule(None, None, Some("@daily".into()));
        assert_eq!(rule, json!({"schedule_type": "cron", "schedule_info": {"expression": "@daily"}}));
    }

    #[test]
    fn durations_read_like_people_say_them() {
        let cases = [
            (0, "0.0 s"),
            (1_234, "1.2 s"),
            (59_940, "59.9 s"),
            (59_960, "1 min"),
            (180_000, "3 min"),
            (3_600_000, "1 h"),
            (7_500_000, "2 h 5 min"),
            (100_800_000, "1 d 4 h"),
            (172_800_000, "2 d"),
        ];
        for (ms, want) in cases {
            assert_eq!(human_duration(ms), want, "{ms}");
        }
    }
}
