//! Protocol v1 between the worker and a runtime process (see
//! `docs/runtime-protocol.md`): requests out, events in, one JSON object
//! per line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub(crate) struct StepRef<'a> {
    pub name: &'a str,
    pub language: &'a str,
    pub sha256: &'a str,
    pub source: &'a str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub modules: &'a std::collections::BTreeMap<String, std::sync::Arc<str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub package: bool,
    /// A package's `process.env` entries, set before it loads.
    #[serde(skip_serializing_if = "<[(String, String)]>::is_empty")]
    pub env: &'a [(String, String)],
}

/// An execution's input: a value, or JSON text written as it is.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Input<'a> {
    Value(&'a Value),
    Raw(&'a serde_json::value::RawValue),
}

#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum Request<'a> {
    Exec {
        v: u32,
        id: &'a str,
        step: StepRef<'a>,
        workdir: &'a str,
        entry: &'a str,
        input: Input<'a>,
        /// The harness masks these in values before it formats them.
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        secrets: &'a [String],
    },
    Introspect {
        v: u32,
        id: &'a str,
        step: StepRef<'a>,
        workdir: &'a str,
    },
    Shutdown {
        v: u32,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(crate) enum Event {
    Ready {
        v: u32,
        #[allow(dead_code)]
        runtime: String,
        #[allow(dead_code)]
        version: String,
    },
    Log {
        id: Option<String>,
        level: String,
        line: String,
    },
    Progress {
        id: Option<String>,
        message: String,
    },
    Result {
        id: Option<String>,
        ok: bool,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        data: Option<Value>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        kind: Option<String>,
        #[serde(default)]
        traceback: Option<String>,
        /// What the script left running (timers, handles, threads): the
        /// process is not reused.
        #[serde(default)]
        leftover: Option<String>,
        /// Whether end marks were written to fds 1 and 2 (a harness that
        /// saw no raw output there since the last execution writes none).
        #[serde(default = "marked")]
        marks: bool,
    },
    Introspection {
        ok: bool,
        #[serde(default)]
        info: Option<Value>,
        #[serde(default)]
        error: Option<String>,
    },
}

fn marked() -> bool {
    true
}

impl<'a> StepRef<'a> {
    pub fn of(script: &'a crate::Script) -> StepRef<'a> {
        StepRef {
            name: &script.name,
            language: script.language.as_str(),
            sha256: &script.sha256,
            source: &script.source,
            modules: &script.modules,
            package: script.package.is_some(),
            env: script.package.as_ref().map(|p| p.env.as_slice()).unwrap_or_default(),
        }
    }
}
