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
        Ok(Api {
            http: reqwest::Client::builder().build()?,
            args,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let base = self.args.server.trim_end_matches('/');
        let url = format!("{base}/api/v1/{path}");
        let mut req = self.http.request(method, &url);
        if let Some(token) = self.args.token.as_deref().filter(|t| !t.is_empty()) {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach Junction at {base}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the server's answer")?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text)
                .map(Some)
                .context("the server's answer is not JSON");
        }
        Err(anyhow!(describe_error(status, &text)))
    }
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
    let mut out = format!(
        "{code} ({}): {}",
        status.as_u16(),
        err["message"].as_str().unwrap_or_default()
    );
    for d in &details {
        let (field, rule, message) = (
            d["field"].as_str(),
            d["rule"].as_str(),
            d["message"].as_str(),
        );
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
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_header(headers.to_vec());
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
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub async fn steps(cmd: StepsCommand) -> Result<()> {
    match cmd {
        StepsCommand::Upload {
            file,
            name,
            description,
            client,
        } => {
            let language = match file.extension().and_then(|e| e.to_str()) {
                Some("js") => "javascript",
                Some("py") => "python",
                _ => bail!(
                    "{}: a step file must end in .js (JavaScript) or .py (Python)",
                    file.display()
                ),
            };
            let name = match name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        anyhow!(
                            "cannot take a step name from {}; give --name",
                            file.display()
                        )
                    })?,
            };
            let source = read_file(&file)?;
            let api = Api::new(client)?;
            let body = json!({"name": name, "language": language, "data": source, "description": description});
            let v = api
                .call(Method::POST, "steps", Some(&body))
                .await?
                .unwrap_or_default();
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
            let v = api
                .call(Method::GET, "steps", None)
                .await?
                .unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            let rows = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![
                        s(&r["name"]),
                        s(&r["language"]),
                        s(&r["version"]),
                        s(&r["updated_at"]),
                        s(&r["description"]),
                    ]
                })
                .collect();
            table(
                &["NAME", "LANGUAGE", "VERSION", "UPDATED", "DESCRIPTION"],
                rows,
            );
        }
        StepsCommand::Show { name, client } => {
            let api = Api::new(client)?;
            let v = api
                .call(Method::GET, &format!("steps/{}", segment(&name)), None)
                .await?
                .unwrap_or_default();
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
            api.call(Method::DELETE, &format!("steps/{}", segment(&name)), None)
                .await?;
            println!("deleted step {name}");
        }
    }
    Ok(())
}

pub async fn documents(kind: Kind, cmd: DocCommand) -> Result<()> {
    match cmd {
        DocCommand::Upload { file, client } => {
            if file.extension().and_then(|e| e.to_str()) != Some("json") {
                bail!(
                    "{}: an {} must be a .json file",
                    file.display(),
                    kind.singular()
                );
            }
            let body = read_json(&file)?;
            let api = Api::new(client)?;
            let v = api
                .call(Method::POST, kind.path(), Some(&body))
                .await?
                .unwrap_or_default();
            if api.args.json {
                print_json(&v);
                return Ok(());
            }
            match kind {
                Kind::Applications => println!(
                    "application {} revision {}",
                    s(&v["name"]),
                    s(&v["revision"])
                ),
                Kind::Configurations => println!("configuration {} stored", s(&v["name"])),
            }
            for w in v["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}: {}", s(&w["field"]), s(&w["message"]));
            }
        }
        DocCommand::List { client } => {
            let api = Api::new(client)?;
            let v = api
                .call(Method::GET, kind.path(), None)
                .await?
                .unwrap_or_default();
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
            let v = api
                .call(
                    Method::GET,
                    &format!("{}/{}", kind.path(), segment(&name)),
                    None,
                )
                .await?
                .unwrap_or_default();
            print_json(&v);
        }
        DocCommand::Delete { name, client } => {
            let api = Api::new(client)?;
            api.call(
                Method::DELETE,
                &format!("{}/{}", kind.path(), segment(&name)),
                None,
            )
            .await?;
            println!("deleted {} {name}", kind.singular());
        }
    }
    Ok(())
}

pub async fn params(cmd: ParamsCommand) -> Result<()> {
    match cmd {
        ParamsCommand::Set {
            name,
            value,
            masked,
            client,
        } => {
            let value = match value {
                Some(v) => v,
                // Keeps a masked value out of argv (ps, shell history).
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the value from stdin")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let api = Api::new(client)?;
            let kind = if masked { "masked" } else { "string" };
            let body = json!({"type": kind, "value": value});
            let v = api
                .call(
                    Method::PUT,
                    &format!("global-parameters/{}", segment(&name)),
                    Some(&body),
                )
                .await?;
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
                    let value = if p["type"] == "masked" {
                        "••••••".to_string()
                    } else {
                        s(&p["value"])
                    };
                    vec![s(&p["name"]), s(&p["type"]), value]
                })
                .collect();
            table(&["NAME", "TYPE", "VALUE"], rows);
        }
        ParamsCommand::Delete { name, client } => {
            let api = Api::new(client)?;
            api.call(
                Method::DELETE,
                &format!("global-parameters/{}", segment(&name)),
                None,
            )
            .await?;
            println!("deleted parameter {name}");
        }
    }
    Ok(())
}

/// The stored list; masked values come back as `null`.
async fn current_params(api: &Api) -> Result<Vec<Value>> {
    let v = api
        .call(Method::GET, "global-parameters", None)
        .await?
        .unwrap_or_default();
    Ok(v.as_array().cloned().unwrap_or_default())
}
