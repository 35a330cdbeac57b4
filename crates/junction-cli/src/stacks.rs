//! `junction stacks`: extension stacks (spec 001), integrator.io's hosted
//! extension functions. Managed with Junction's API token like the other
//! client commands; `stacks call` is the one command that talks to the
//! extension host itself, with the stack's system token.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{
    describe_error, emit, local_time, or_dash, pair, parse_every, print_json, query, read_file, s, segment, table, Api,
};
use crate::ClientArgs;

#[derive(Subcommand, Debug)]
pub enum StacksCommand {
    /// Upload a stack, or a new version of one: a .js file, or a package
    /// (.zip, .tgz or .tar.gz with package.json, and its lock file when it
    /// has dependencies). A new stack's system token is printed once.
    Upload {
        name: String,
        file: PathBuf,
        /// `{"diy": FILE}` or `{"connectors": {ID: FILE}}`, as JSON or
        /// `@file.json` (default: the module's exports as DIY).
        #[arg(long, value_name = "JSON|@FILE")]
        config: Option<String>,
        /// Seconds one call may take (1-3600).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u32>,
        /// Calls served at once (1-64).
        #[arg(long, value_name = "N")]
        max_concurrency: Option<u32>,
        #[command(flatten)]
        env: EnvArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List stacks.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A stack's settings, env, function URL and versions with their functions.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A stack's calls, newest first; with --id, one call's log.
    Calls {
        name: String,
        /// Print this call's log (its record on stderr).
        #[arg(long, conflicts_with_all = ["function", "kind", "outcome", "since", "before", "limit"])]
        id: Option<i64>,
        /// Only calls of this function.
        #[arg(long)]
        function: Option<String>,
        /// Only calls of this type (hook, wrapper, ...).
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        #[arg(long, value_parser = PossibleValuesParser::new(["succeeded", "failed", "timed_out"]))]
        outcome: Option<String>,
        /// Only calls started since this time: RFC 3339 (2026-05-01T10:00:00Z)
        /// or a duration ago (90s, 30m, 2h, 1d, 2w).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only calls older than this id (the next page).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
        /// Calls to show (1-500; the server's default is 50).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The stack's system token.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Change a stack's settings; env entries not named are kept.
    Set {
        name: String,
        /// Seconds one call may take (1-3600).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u32>,
        /// Calls served at once (1-64).
        #[arg(long, value_name = "N")]
        max_concurrency: Option<u32>,
        #[command(flatten)]
        env: EnvArgs,
        /// Remove this env entry (repeat for several).
        #[arg(long = "unset-env", value_name = "NAME")]
        unset_env: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a stack: its token stops working at once.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Call one of the stack's functions the way integrator.io does, with
    /// its system token; prints the answer. Exit status 1 when the call
    /// fails (422), the token is refused (401) or the host is busy (503).
    Call {
        name: String,
        function: String,
        /// The function's type: hook, wrapper, ... ('' for a top-level function).
        #[arg(long = "type", value_name = "TYPE", default_value = "hook")]
        kind: String,
        /// The function's options, as JSON or `@file.json`.
        #[arg(long, value_name = "JSON|@FILE")]
        options: Option<String>,
        /// Call as this connector (`_connectorId`) instead of DIY.
        #[arg(long, value_name = "ID")]
        connector: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// A new system token, printed once; the old one is refused from now on.
    Rotate {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Environment entries the module reads from `process.env`.
#[derive(Args, Debug, Clone)]
pub struct EnvArgs {
    /// A plain env entry (repeat for several).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = pair)]
    env: Vec<String>,
    /// An encrypted env entry, never shown again; `NAME` alone reads the
    /// value from a line of stdin (keeps it out of ps and shell history).
    #[arg(long = "secret-env", value_name = "NAME[=VALUE]", value_parser = env_name)]
    secret_env: Vec<String>,
}

impl EnvArgs {
    fn is_empty(&self) -> bool {
        self.env.is_empty() && self.secret_env.is_empty()
    }

    /// The entries given, as the API's `{name, value, encrypted}`.
    fn entries(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for p in &self.env {
            let (name, value) = p.split_once('=').expect("checked by clap");
            out.push(json!({"name": name, "value": value, "encrypted": false}));
        }
        for p in &self.secret_env {
            let (name, value) = match p.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).with_context(|| format!("reading {p}'s value from stdin"))?;
                    (p.clone(), line.trim_end_matches(['\r', '\n']).to_string())
                }
            };
            out.push(json!({"name": name, "value": value, "encrypted": true}));
        }
        Ok(out)
    }
}

/// Where `stacks call` finds the extension host, and the stack's token.
#[derive(Args, Clone, Debug)]
pub struct HostArgs {
    /// Junction server URL.
    #[arg(long, env = "JUNCTION_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The stack's system token (jst_...), not a Junction API token.
    #[arg(long, env = "JUNCTION_STACK_TOKEN", hide_env_values = true)]
    token: String,
    /// Print the answer's JSON as sent (and an error answer's body too).
    #[arg(long)]
    json: bool,
}

fn env_name(text: &str) -> Result<String, String> {
    match text.split_once('=').map_or(text, |(k, _)| k) {
        "" => Err("expected NAME=VALUE or NAME".to_string()),
        _ => Ok(text.to_string()),
    }
}

/// `--config` / `--options`: JSON text, or `@path` of a JSON file.
fn json_arg(flag: &str, text: &str) -> Result<Value> {
    match text.strip_prefix('@') {
        Some(path) => {
            let text = read_file(Path::new(path))?;
            serde_json::from_str(&text).with_context(|| format!("{flag} @{path}: the file is not valid JSON"))
        }
        None => serde_json::from_str(text).with_context(|| format!("{flag}: not valid JSON (use @FILE for a file)")),
    }
}

/// What an upload sends: JSON with the source, or an archive's bytes.
enum Body {
    Source(String),
    Archive { mime: &'static str, bytes: Vec<u8> },
}

fn upload_body(file: &Path) -> Result<Body> {
    if file.is_dir() {
        bail!(
            "{} is a directory: pack it first, without node_modules (dependencies are installed from the lock \
             file), e.g. `tar czf stack.tgz --exclude=node_modules -C {} .`, then upload stack.tgz",
            file.display(),
            file.display()
        );
    }
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_ascii_lowercase();
    let mime = if name.ends_with(".js") || name.ends_with(".cjs") {
        return Ok(Body::Source(read_file(file)?));
    } else if name.ends_with(".zip") {
        "application/zip"
    } else if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
        "application/gzip"
    } else {
        bail!("{}: a stack is a .js file or a package as .zip, .tgz or .tar.gz", file.display());
    };
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(Body::Archive { mime, bytes })
}

/// The extension host's URL of a stack's functions.
fn function_url(server: &str, name: &str) -> String {
    format!("{}/stacks/{}/function", server.trim_end_matches('/'), segment(name))
}

/// The stack, or `None` when there is none of that name.
async fn find_stack(api: &Api, name: &str) -> Result<Option<Value>> {
    let req = api.request(Method::GET, &format!("stacks/{}", segment(name)));
    let base = api.args.server.trim_end_matches('/');
    let resp = req.send().await.map_err(|e| anyhow!("cannot reach Junction at {base}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the server's answer")?;
    match status {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => serde_json::from_str(&text).map(Some).context("the server's answer is not JSON"),
        s => bail!(describe_error(s, &text)),
    }
}

/// `current` (a stack's env as shown: encrypted entries without their
/// value, which the server then keeps) with `given` set and `unset` gone.
fn merge_env(current: &Value, given: Vec<Value>, unset: &[String]) -> Result<Vec<Value>> {
    let mut out: Vec<Value> = current.as_array().cloned().unwrap_or_default();
    for name in unset {
        let before = out.len();
        out.retain(|e| e["name"] != name.as_str());
        if out.len() == before {
            bail!("--unset-env {name}: the stack has no env entry {name}");
        }
    }
    for entry in given {
        match out.iter_mut().find(|e| e["name"] == entry["name"]) {
            Some(slot) => *slot = entry,
            None => out.push(entry),
        }
    }
    Ok(out)
}

/// `{"diy": "index.js"}` as `diy index.js`, connectors as `connectors (2)`.
fn config_kind(config: &Value) -> String {
    if let Some(file) = config.get("diy") {
        return format!("diy {}", s(file));
    }
    match config.get("connectors").and_then(Value::as_object) {
        Some(map) => format!("connectors ({})", map.len()),
        None => or_dash(s(config)),
    }
}

/// A version's functions: `index.js: hooks.preSavePage, wrappers.ping`.
fn functions_text(functions: &Value) -> String {
    let files: Vec<String> = functions
        .as_object()
        .into_iter()
        .flatten()
        .map(|(file, objects)| {
            let names: Vec<String> = objects
                .as_object()
                .into_iter()
                .flatten()
                .flat_map(|(object, list)| {
                    list.as_array().into_iter().flatten().map(move |f| match object.as_str() {
                        "" => s(f),
                        object => format!("{object}.{}", s(f)),
                    })
                })
                .collect();
            format!("{file}: {}", or_dash(names.join(", ")))
        })
        .collect();
    or_dash(files.join("; "))
}

/// `--since`: RFC 3339 as is; a duration (2h) as that long ago.
fn since_time(text: &str) -> Result<String> {
    if text.parse::<jiff::Timestamp>().is_ok() {
        return Ok(text.to_string());
    }
    let seconds = parse_every(text).ok().and_then(|every| every.seconds()).ok_or_else(|| {
        anyhow!("--since {text:?}: expected an RFC 3339 time (2026-05-01T10:00:00Z) or a duration ago (2h, 1d)")
    })?;
    let at = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(seconds))
        .map_err(|e| anyhow!("--since {text}: {e}"))?;
    Ok(at.to_string())
}

fn print_token(server: &str, name: &str, token: &str) {
    emit(format!("function URL: {}", function_url(server, name)));
    emit(format!("system token: {token}"));
    eprintln!(
        "note: the system token is shown only this once; store it now (integrator.io's stack setting). \
         `junction stacks token rotate {name}` makes a new one."
    );
}

pub async fn stacks(cmd: StacksCommand) -> Result<()> {
    match cmd {
        StacksCommand::Upload { name, file, config, timeout, max_concurrency, env, client } => {
            let body = upload_body(&file)?;
            let config = config.map(|c| json_arg("--config", &c)).transpose()?;
            let api = Api::new(client)?;
            let given = env.entries()?;
            // A new one-file stack gets its env with the upload (its module
            // loads with it); otherwise the env is set right after it.
            let env_in_body =
                !env.is_empty() && matches!(body, Body::Source(_)) && find_stack(&api, &name).await?.is_none();
            let v = match body {
                Body::Source(data) => {
                    let mut req = json!({"name": name, "data": data});
                    for (key, value) in [
                        ("config", config),
                        ("timeout_seconds", timeout.map(Value::from)),
                        ("max_concurrency", max_concurrency.map(Value::from)),
                    ] {
                        if let Some(value) = value {
                            req[key] = value;
                        }
                    }
                    if env_in_body {
                        req["env"] = Value::Array(given.clone());
                    }
                    api.call(Method::POST, "stacks", Some(&req)).await?.unwrap_or_default()
                }
                Body::Archive { mime, bytes } => {
                    let q = query(&[
                        ("name", Some(name.clone())),
                        ("config", config.map(|c| c.to_string())),
                        ("timeout_seconds", timeout.map(|t| t.to_string())),
                        ("max_concurrency", max_concurrency.map(|c| c.to_string())),
                    ]);
                    let req = api.request(Method::POST, &format!("stacks{q}")).header(header::CONTENT_TYPE, mime);
                    let (_, _, text) = api.send(req.body(bytes)).await?;
                    serde_json::from_str(&text).context("the server's answer is not JSON")?
                }
            };
            let stored = if !env.is_empty() && !env_in_body {
                let current = find_stack(&api, &name).await?.unwrap_or_default();
                let body = json!({"env": merge_env(&current["env"], given.clone(), &[])?});
                let path = format!("stacks/{}", segment(&name));
                Some(
                    api.call(Method::PATCH, &path, Some(&body))
                        .await
                        .context("the version is stored; setting its env")?,
                )
            } else {
                None
            };
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let version = &v["version"];
            emit(format!(
                "stack {} version {} ({}, {} bytes, sha256 {})",
                s(&version["name"]),
                s(&version["version"]),
                s(&version["format"]),
                s(&version["size"]),
                s(&version["sha256"])
            ));
            emit(format!("config: {}", version["config"]));
            emit(format!("functions: {}", functions_text(&version["functions"])));
            if stored.is_some() {
                emit(format!("env set: {}", given.iter().map(|e| s(&e["name"])).collect::<Vec<_>>().join(", ")));
            }
            match v["system_token"].as_str() {
                Some(token) => print_token(&api.args.server, &name, token),
                None => emit(format!("function URL: {}", function_url(&api.args.server, &name))),
            }
        }
        StacksCommand::List { client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, "stacks", None).await?.unwrap_or_default();
            api.print_list(&v, &["NAME", "VERSION", "CONFIG", "TIMEOUT S", "CONCURRENCY", "UPDATED"], |st| {
                vec![
                    s(&st["name"]),
                    s(&st["version"]),
                    config_kind(&st["config"]),
                    s(&st["timeout_seconds"]),
                    s(&st["max_concurrency"]),
                    local_time(&st["updated_at"], false),
                ]
            });
        }
        StacksCommand::Show { name, client } => {
            let api = Api::new(client)?;
            let v = api.call(Method::GET, &format!("stacks/{}", segment(&name)), None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            emit(format!("name:            {}", s(&v["name"])));
            emit(format!("version:         {} (sha256 {})", s(&v["version"]), s(&v["sha256"])));
            emit(format!("config:          {}", v["config"]));
            emit(format!("timeout:         {} s", s(&v["timeout_seconds"])));
            emit(format!("max concurrency: {}", s(&v["max_concurrency"])));
            emit(format!("function URL:    {}", function_url(&api.args.server, &name)));
            emit(format!("token created:   {}", local_time(&v["token_created_at"], true)));
            emit(format!("created:         {}", local_time(&v["created_at"], true)));
            emit(format!("updated:         {}", local_time(&v["updated_at"], true)));
            let env = v["env"].as_array().cloned().unwrap_or_default();
            if env.is_empty() {
                emit("env:             -");
            } else {
                emit("env:");
                for e in env {
                    let value =
                        if e["encrypted"] == true { "******** (encrypted)".to_string() } else { s(&e["value"]) };
                    emit(format!("  {}={value}", s(&e["name"])));
                }
            }
            let rows = v["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|ver| {
                    vec![
                        s(&ver["version"]),
                        local_time(&ver["created_at"], false),
                        s(&ver["format"]),
                        s(&ver["size"]),
                        s(&ver["sha256"]).chars().take(12).collect(),
                        functions_text(&ver["functions"]),
                    ]
                })
                .collect();
            table(&["VERSION", "CREATED", "FORMAT", "BYTES", "SHA256", "FUNCTIONS"], rows);
        }
        StacksCommand::Calls { name, id: Some(id), client, .. } => {
            let api = Api::new(client)?;
            let path = format!("stacks/{}/calls/{id}", segment(&name));
            let v = api.call(Method::GET, &path, None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let error = v["error_code"].as_str().map(|c| format!(" ({c})")).unwrap_or_default();
            eprintln!(
                "call {} of {} version {}: {} {} {}{error} in {} ms, started {}",
                s(&v["id"]),
                s(&v["stack"]),
                s(&v["version"]),
                or_dash(s(&v["kind"])),
                or_dash(s(&v["function"])),
                s(&v["outcome"]),
                s(&v["duration_ms"]),
                local_time(&v["started_at"], true),
            );
            let log = s(&v["log"]);
            if !log.is_empty() {
                emit(log.trim_end_matches('\n'));
            }
        }
        StacksCommand::Calls { name, id: None, function, kind, outcome, since, before, limit, client } => {
            let since = since.as_deref().map(since_time).transpose()?;
            let api = Api::new(client)?;
            let q = query(&[
                ("function", function),
                ("type", kind),
                ("outcome", outcome),
                ("since", since),
                ("before", before.map(|b| b.to_string())),
                ("limit", limit.map(|l| l.to_string())),
            ]);
            let v = api.call(Method::GET, &format!("stacks/{}/calls{q}", segment(&name)), None).await?;
            let headers = ["ID", "STARTED", "VERSION", "FUNCTION", "TYPE", "OUTCOME", "ERROR", "MS", "SIZE"];
            api.print_list(&v.unwrap_or_default(), &headers, |c| {
                vec![
                    s(&c["id"]),
                    local_time(&c["started_at"], false),
                    s(&c["version"]),
                    or_dash(s(&c["function"])),
                    or_dash(s(&c["kind"])),
                    s(&c["outcome"]),
                    or_dash(s(&c["error_code"])),
                    s(&c["duration_ms"]),
                    s(&c["response_size"]),
                ]
            });
        }
        StacksCommand::Token(TokenCommand::Rotate { name, client }) => {
            let api = Api::new(client)?;
            let path = format!("stacks/{}/token", segment(&name));
            let v = api.call(Method::POST, &path, None).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            emit(format!("stack {name}: new system token; the old one is refused from now on"));
            print_token(&api.args.server, &name, &s(&v["system_token"]));
        }
        StacksCommand::Set { name, timeout, max_concurrency, env, unset_env, client } => {
            if timeout.is_none() && max_concurrency.is_none() && env.is_empty() && unset_env.is_empty() {
                crate::usage_error(
                    &["stacks", "set"],
                    "nothing to change: give --timeout, --max-concurrency, --env, --secret-env or --unset-env",
                );
            }
            let api = Api::new(client)?;
            let path = format!("stacks/{}", segment(&name));
            let mut body = json!({});
            if let Some(t) = timeout {
                body["timeout_seconds"] = t.into();
            }
            if let Some(c) = max_concurrency {
                body["max_concurrency"] = c.into();
            }
            if !env.is_empty() || !unset_env.is_empty() {
                let current = api.call(Method::GET, &path, None).await?.unwrap_or_default();
                body["env"] = Value::Array(merge_env(&current["env"], env.entries()?, &unset_env)?);
            }
            let v = api.call(Method::PATCH, &path, Some(&body)).await?.unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let names: Vec<String> = v["env"].as_array().into_iter().flatten().map(|e| s(&e["name"])).collect();
            emit(format!(
                "stack {}: timeout {} s, max concurrency {}, env {}",
                s(&v["name"]),
                s(&v["timeout_seconds"]),
                s(&v["max_concurrency"]),
                or_dash(names.join(", "))
            ));
        }
        StacksCommand::Delete { name, client } => {
            let api = Api::new(client)?;
            api.call(Method::DELETE, &format!("stacks/{}", segment(&name)), None).await?;
            emit(format!("deleted stack {name}"));
        }
        StacksCommand::Call { name, function, kind, options, connector, host } => {
            call(&host, &name, function_body(&function, &kind, options.as_deref(), connector)?).await?
        }
    }
    Ok(())
}

/// The body integrator.io posts for one function call.
fn function_body(function: &str, kind: &str, options: Option<&str>, connector: Option<String>) -> Result<Value> {
    let mut body = match connector {
        Some(id) => json!({"_connectorId": id}),
        None => json!({"diy": true}),
    };
    if !kind.is_empty() {
        body["type"] = Value::from(kind);
    }
    body["function"] = Value::from(function);
    body["options"] = match options {
        Some(text) => json_arg("--options", text)?,
        None => json!({}),
    };
    Ok(body)
}

/// `POST /stacks/{name}/function`: the answer on stdout; an error answer
/// (`{"errors": [{code, message}]}`) as one line per error and exit 1.
async fn call(host: &HostArgs, name: &str, body: Value) -> Result<()> {
    let base = host.server.trim_end_matches('/');
    let resp = reqwest::Client::new()
        .post(function_url(base, name))
        .bearer_auth(&host.token)
        .json(&body)
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach Junction at {base}: {e}"))?;
    let status = resp.status();
    let retry_after = resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = resp.text().await.context("reading the extension host's answer")?;
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    if status.is_success() {
        match (&parsed, host.json) {
            (Some(v), false) => print_json(v),
            _ if !text.is_empty() => emit(&text),
            _ => {}
        }
        return Ok(());
    }
    if host.json && !text.is_empty() {
        emit(&text);
    }
    let errors = parsed.as_ref().and_then(|v| v["errors"].as_array()).cloned().unwrap_or_default();
    let mut message = match errors.as_slice() {
        [] => format!("the extension host answered {status}: {}", text.trim()),
        [first, rest @ ..] => {
            let mut out = format!("{} ({}): {}", s(&first["code"]), status.as_u16(), s(&first["message"]));
            for e in rest {
                out.push_str(&format!("\n  {}: {}", s(&e["code"]), s(&e["message"])));
            }
            out
        }
    };
    if let Some(seconds) = retry_after {
        message.push_str(&format!(" (retry after {seconds} s)"));
    }
    bail!(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_flags_replace_by_name_and_keep_the_others() {
        let current = json!([
            {"name": "A", "value": "1", "encrypted": false},
            {"name": "KEY", "encrypted": true},
            {"name": "B", "value": "2", "encrypted": false},
        ]);
        let given = vec![json!({"name": "A", "value": "9", "encrypted": false}), json!({"name": "C", "value": "3"})];
        let merged = merge_env(&current, given, &["B".to_string()]).unwrap();
        assert_eq!(
            Value::Array(merged),
            json!([
                {"name": "A", "value": "9", "encrypted": false},
                {"name": "KEY", "encrypted": true},
                {"name": "C", "value": "3"},
            ])
        );
        assert!(merge_env(&current, vec![], &["NOPE".to_string()]).is_err());
    }

    #[test]
    fn functions_read_as_object_dot_name() {
        let f = json!({"index.js": {"hooks": ["preSavePage", "postMap"], "": ["top"]}});
        assert_eq!(functions_text(&f), "index.js: hooks.preSavePage, hooks.postMap, top");
        assert_eq!(functions_text(&json!({})), "-");
    }

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        assert_eq!(since_time("2026-05-01T10:00:00Z").unwrap(), "2026-05-01T10:00:00Z");
        let ago: jiff::Timestamp = since_time("2h").unwrap().parse().unwrap();
        let diff = jiff::Timestamp::now().as_second() - ago.as_second();
        assert!((7199..=7201).contains(&diff), "{diff}");
        assert!(since_time("yesterday").is_err());
        assert!(since_time("1mo").is_err());
    }

    #[test]
    fn a_call_is_diy_unless_a_connector_is_named() {
        let body = function_body("preSavePage", "hook", Some(r#"{"data": []}"#), None).unwrap();
        assert_eq!(body, json!({"diy": true, "type": "hook", "function": "preSavePage", "options": {"data": []}}));
        let body = function_body("ping", "", None, Some("c1".into())).unwrap();
        assert_eq!(body, json!({"_connectorId": "c1", "function": "ping", "options": {}}));
    }
}
