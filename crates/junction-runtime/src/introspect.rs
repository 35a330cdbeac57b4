//! What an uploaded step declares, learned by loading it in its runtime
//! (time-limited): a script that does not load is refused, and a Python
//! step reports its friendly name, description, version and parameters.

use junction_core::step::StepParameter;
use serde::Deserialize;

use crate::process::next_event;
use crate::protocol::{self, Event as Wire, Request, StepRef};
use crate::{Runtime, RuntimeError, Script};

/// What a step declares.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Introspection {
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The step's own version string (`self.version = "1.0.0"`).
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub parameters: Vec<StepParameter>,
    /// JavaScript: the exported function names.
    #[serde(default)]
    pub exports: Vec<String>,
    /// A package: per module file, the functions of each object
    /// (`{"index.js": {"hooks": ["preSavePage"], "": ["topLevel"]}}`).
    #[serde(default)]
    pub functions: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    /// The source is not acceptable; the message says why, for the user.
    #[error("{0}")]
    Rejected(String),
    /// The runtime could not be used; not the user's fault.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl Runtime {
    /// Loads `script` in its runtime and reports what it declares.
    pub async fn introspect(&self, script: &Script) -> Result<Introspection, IntrospectError> {
        let config = &self.host.config;
        // A process that loaded an upload serves no run afterwards (it is
        // nobody's tenant): it is ended below whatever the answer.
        let (mut process, _) = self.pool.acquire(&self.host, script, "", true).await?;
        let workdir = process.workdir("introspect-").map_err(RuntimeError::Io)?;
        let request = Request::Introspect {
            v: protocol::VERSION,
            id: "introspect",
            step: StepRef::of(script),
            workdir: &workdir.path().to_string_lossy(),
        };
        process.send(&request).await?;
        let answer = tokio::time::timeout(config.check_timeout, async {
            loop {
                match next_event(&mut process.events).await? {
                    Some(Wire::Introspection { ok, info, error, .. }) => return Ok((ok, info, error)),
                    Some(_) => continue,
                    None => {
                        return Err(RuntimeError::Crashed("the runtime process exited while loading the step".into()))
                    }
                }
            }
        })
        .await;
        match answer {
            Ok(Ok((true, info, _))) => {
                let info = info.unwrap_or_default();
                let parsed = serde_json::from_value(info)
                    .map_err(|e| RuntimeError::Crashed(format!("the runtime's introspection does not parse: {e}")));
                match parsed {
                    Ok(parsed) => {
                        process.kill().await;
                        Ok(parsed)
                    }
                    Err(e) => {
                        process.kill().await;
                        Err(e.into())
                    }
                }
            }
            Ok(Ok((false, _, error))) => {
                process.kill().await;
                Err(IntrospectError::Rejected(error.unwrap_or_else(|| "the step does not load".into())))
            }
            Ok(Err(e)) => {
                process.kill().await;
                Err(e.into())
            }
            Err(_) => {
                process.kill().await;
                Err(IntrospectError::Rejected(format!(
                    "loading the step took longer than {} s",
                    config.check_timeout.as_secs()
                )))
            }
        }
    }
}
