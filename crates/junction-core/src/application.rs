//! Applications (spec 004): a JSON document naming steps, wiring them with
//! `output_to` into a DAG, and carrying variables and retry options.
//!
//! The document is kept as the user wrote it, unknown keys and key order
//! included, so an application read back and uploaded again is unchanged.
//! Validation builds a typed view beside it. Encrypted variable values are
//! taken out of the document on the way in (see [`crate::secret`]); the
//! stored document always has `"value": null` for them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::document::{self, kind};
use crate::name::check_name;
use crate::secret::SecretWrites;
use crate::validation::{Invalid, Violations};

/// Keys that Junction owns in an application as it is read back. They are
/// ignored on upload so a downloaded document can be uploaded again.
pub const SERVER_KEYS: [&str; 4] = ["revision", "created_at", "updated_at", "warnings"];

/// Keys of a run's `params` that are run options (spec 004), so no
/// variable may have these names.
pub const RUN_OPTIONS: [&str; 4] = ["queue", "configuration", "log_level", "wait"];

/// Step keys that are not step parameters.
const STEP_KEYS: [&str; 8] =
    ["name", "file", "output_to", "retry_max", "retry_backoff", "retry_jitter", "retry_backoff_max", "retry_countdown"];

/// Retry options of one step, with spec 004's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOptions {
    /// Retries after the first attempt (`retry_max`, default 0).
    pub max: u32,
    /// Exponential backoff (`retry_backoff`, default false).
    pub backoff: bool,
    /// Random jitter (`retry_jitter`, default false).
    pub jitter: bool,
    /// Cap on a backoff delay in seconds (`retry_backoff_max`, default 600).
    pub backoff_max: u64,
    /// Fixed delay in seconds when backoff is off (`retry_countdown`, default 180).
    pub countdown: u64,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self { max: 0, backoff: false, jitter: false, backoff_max: 600, countdown: 180 }
    }
}

/// One step of an application.
#[derive(Debug, Clone, PartialEq)]
pub struct AppStep {
    /// Unique within the application; may contain spaces.
    pub name: String,
    /// The stored step this runs.
    pub file: String,
    /// Names of the steps that receive this step's saved data.
    pub output_to: Vec<String>,
    pub retry: RetryOptions,
    /// Every other key of the step object: the step's parameters.
    pub parameters: Map<String, Value>,
}

/// One entry of `app_variables`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppVariable {
    pub name: String,
    /// `None` for encrypted variables: their value lives sealed in the store.
    pub value: Option<Value>,
    pub default_value: Option<Value>,
    pub required: bool,
    /// A masked job parameter: write-only, sealed at rest.
    pub encrypted: bool,
}

/// A validated application.
#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    document: Map<String, Value>,
    steps: Vec<AppStep>,
    variables: Vec<AppVariable>,
}

/// What an upload yields: the application (secret-free) and the encrypted
/// variable values to seal.
#[derive(Debug, Clone)]
pub struct ApplicationUpload {
    pub application: Application,
    pub secrets: SecretWrites,
}

impl Application {
    /// Validates an uploaded document. Every violation is reported, each
    /// naming its field (`steps[1].output_to[0]`) and rule.
    pub fn parse(body: Value) -> Result<ApplicationUpload, Invalid> {
        Application::parse_with(body, true)
    }

    fn parse_with(body: Value, user_name: bool) -> Result<ApplicationUpload, Invalid> {
        let mut v = Violations::default();
        let mut doc = document::object(body, "an application", &SERVER_KEYS)?;
        if user_name {
            document::document_name(&doc, "an application", &mut v);
        }
        for key in ["friendly_name", "description", "author"] {
            document::string(&doc, key, key, None, &mut v);
        }
        match doc.get("version") {
            None | Some(Value::Null | Value::String(_) | Value::Number(_)) => {}
            Some(other) => v.push("version", "type", format!("must be a string, not {}", kind(other))),
        }
        for key in ["configuration", "queue"] {
            if let Some(s) = document::string(&doc, key, key, None, &mut v) {
                if !s.is_empty() {
                    if let Err(e) = check_name(key, &s) {
                        v.add(e);
                    }
                }
            }
        }
        document::opt_bool(&doc, "generate_report", "generate_report", &mut v);
        // Spec 000's "Automated Job" trigger, and an optional cap on the
        // automated runs going at once.
        // Checked on upload only: documents stored before these keys meant
        // anything must still load (the accessors ignore odd values).
        if user_name {
            document::opt_bool(&doc, "automated", "automated", &mut v);
            if document::opt_uint(&doc, "max_concurrency", "max_concurrency", 10_000, &mut v) == Some(0) {
                v.push("max_concurrency", "range", "must be at least 1 (leave it out for no limit)");
            }
        }

        let steps = parse_steps(doc.get("steps"), &mut v);
        let (variables, secrets) = parse_variables(doc.get_mut("app_variables"), &mut v);
        if !v.is_empty() {
            return v.finish(unreachable_app());
        }
        check_graph(&steps, &mut v);
        let application = Application { document: doc, steps, variables };
        v.finish(ApplicationUpload { application, secrets })
    }

    /// Rebuilds an application from a document the store kept. The document
    /// was validated when it was stored.
    pub fn from_stored(document: Value) -> Result<Application, Invalid> {
        Ok(Application::parse_with(document, false)?.application)
    }

    /// The one-step application a lone step run (`POST /steps/run`) runs:
    /// named `.step.NAME`, a name no user application can have (names do
    /// not start with a dot), with `parameters` as the step's parameters.
    pub fn single_step(step: &str, parameters: Map<String, Value>) -> Result<Application, Invalid> {
        let mut obj = parameters;
        for key in STEP_KEYS {
            obj.remove(key);
        }
        obj.insert("name".into(), Value::String(step.to_string()));
        obj.insert("file".into(), Value::String(step.to_string()));
        let doc = serde_json::json!({"name": format!(".step.{step}"), "steps": [Value::Object(obj)]});
        Ok(Application::parse_with(doc, false)?.application)
    }

    pub fn name(&self) -> &str {
        self.document.get("name").and_then(Value::as_str).unwrap_or_default()
    }

    /// The configuration the application names, if any (`""` means none).
    pub fn configuration(&self) -> Option<&str> {
        self.str_key("configuration")
    }

    pub fn queue(&self) -> Option<&str> {
        self.str_key("queue")
    }

    pub fn friendly_name(&self) -> Option<&str> {
        self.str_key("friendly_name")
    }

    pub fn description(&self) -> Option<&str> {
        self.str_key("description")
    }

    /// Marked as an automated job (spec 000): it runs when triggered.
    pub fn automated(&self) -> bool {
        self.document.get("automated").and_then(Value::as_bool).unwrap_or(false)
    }

    /// The most automated runs allowed to go at once, if capped.
    pub fn max_concurrency(&self) -> Option<u64> {
        self.document.get("max_concurrency").and_then(Value::as_u64)
    }

    fn str_key(&self, key: &str) -> Option<&str> {
        self.document.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    pub fn steps(&self) -> &[AppStep] {
        &self.steps
    }

    pub fn variables(&self) -> &[AppVariable] {
        &self.variables
    }

    /// The document as stored and shown: no secret values in it.
    pub fn document(&self) -> &Map<String, Value> {
        &self.document
    }

    /// Checks this document's encrypted entries against what is sealed
    /// now (see [`crate::secret::check_against_sealed`]).
    pub fn check_against_sealed(&self, sealed_now: &[String], writes: &SecretWrites) -> Result<(), Invalid> {
        let entries = self.variables.iter().enumerate().map(|(i, v)| (i, v.name.as_str(), v.encrypted));
        crate::secret::check_against_sealed(sealed_now, writes, "app_variables", entries)
    }

    /// Names of the stored steps this application runs, each once.
    pub fn step_files(&self) -> BTreeSet<&str> {
        self.steps.iter().map(|s| s.file.as_str()).collect()
    }

    /// Steps grouped in waves: every step of a wave has all its inputs in
    /// earlier waves, so a wave's steps may run in parallel. The graph was
    /// checked acyclic on parse.
    pub fn waves(&self) -> Vec<Vec<&AppStep>> {
        let order = topological_waves(&self.steps).unwrap_or_default();
        order.into_iter().map(|w| w.into_iter().map(|i| &self.steps[i]).collect()).collect()
    }

    /// Every step downstream of `step` (through `output_to`, transitively),
    /// in application order.
    pub fn descendants_of(&self, step: &str) -> Vec<&str> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut stack = vec![step];
        while let Some(current) = stack.pop() {
            if let Some(s) = self.steps.iter().find(|s| s.name == current) {
                for t in &s.output_to {
                    if seen.insert(t.as_str()) {
                        stack.push(t.as_str());
                    }
                }
            }
        }
        self.steps.iter().map(|s| s.name.as_str()).filter(|n| seen.contains(n)).collect()
    }

    /// Names of the steps whose saved data reaches `step` (its inputs), in
    /// application order.
    pub fn inputs_of(&self, step: &str) -> Vec<&str> {
        self.steps.iter().filter(|s| s.output_to.iter().any(|t| t == step)).map(|s| s.name.as_str()).collect()
    }
}

fn unreachable_app() -> ApplicationUpload {
    ApplicationUpload {
        application: Application { document: Map::new(), steps: vec![], variables: vec![] },
        secrets: vec![],
    }
}

fn parse_steps(steps: Option<&Value>, v: &mut Violations) -> Vec<AppStep> {
    let list = match steps {
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) => {
            v.push("steps", "required", "an application needs at least one step");
            return vec![];
        }
        Some(other) => {
            v.push("steps", "type", format!("must be an array of step objects, not {}", kind(other)));
            return vec![];
        }
    };
    if list.is_empty() {
        v.push("steps", "min_items", "an application needs at least one step");
    }
    let mut out = Vec::with_capacity(list.len());
    let mut seen = BTreeSet::new();
    for (i, step) in list.iter().enumerate() {
        let at = |k: &str| format!("steps[{i}].{k}");
        let Value::Object(obj) = step else {
            v.push(format!("steps[{i}]"), "type", format!("a step must be an object, not {}", kind(step)));
            continue;
        };
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 128 && !s.chars().any(char::is_control) => {
                s.clone()
            }
            Some(Value::String(_)) => {
                v.push(at("name"), "name_syntax", "must be 1 to 128 characters, not blank, without control characters");
                String::new()
            }
            None | Some(Value::Null) => {
                v.push(at("name"), "required", "every step needs a name");
                String::new()
            }
            Some(other) => {
                v.push(at("name"), "type", format!("must be a string, not {}", kind(other)));
                String::new()
            }
        };
        if !name.is_empty() && !seen.insert(name.clone()) {
            v.push(at("name"), "unique", format!("another step is already named {name:?}"));
        }
        let file = match obj.get("file") {
            Some(Value::String(s)) => {
                let s = s.strip_suffix(".py").or_else(|| s.strip_suffix(".js")).unwrap_or(s);
                if let Err(e) = check_name(&at("file"), s) {
                    v.add(e);
                }
                s.to_string()
            }
            None | Some(Value::Null) => {
                v.push(at("file"), "required", "every step names the stored step it runs in \"file\"");
                String::new()
            }
            Some(other) => {
                v.push(at("file"), "type", format!("must be a string, not {}", kind(other)));
                String::new()
            }
        };
        let output_to = match obj.get("output_to") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(targets)) => targets
                .iter()
                .enumerate()
                .filter_map(|(j, t)| match t {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        v.push(
                            format!("steps[{i}].output_to[{j}]"),
                            "type",
                            format!("must be a step name, not {}", kind(other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                v.push(at("output_to"), "type", format!("must be an array of step names, not {}", kind(other)));
                vec![]
            }
        };
        let defaults = RetryOptions::default();
        let retry = RetryOptions {
            max: document::opt_uint(obj, "retry_max", &at("retry_max"), 1_000, v).map_or(defaults.max, |n| n as u32),
            backoff: document::opt_bool(obj, "retry_backoff", &at("retry_backoff"), v).unwrap_or(defaults.backoff),
            jitter: document::opt_bool(obj, "retry_jitter", &at("retry_jitter"), v).unwrap_or(defaults.jitter),
            backoff_max: document::opt_uint(obj, "retry_backoff_max", &at("retry_backoff_max"), 86_400 * 7, v)
                .unwrap_or(defaults.backoff_max),
            countdown: document::opt_uint(obj, "retry_countdown", &at("retry_countdown"), 86_400 * 7, v)
                .unwrap_or(defaults.countdown),
        };
        let parameters = obj
            .iter()
            .filter(|(k, _)| !STEP_KEYS.contains(&k.as_str()))
            .map(|(k, val)| (k.clone(), val.clone()))
            .collect();
        out.push(AppStep { name, file, output_to, retry, parameters });
    }
    out
}

fn parse_variables(vars: Option<&mut Value>, v: &mut Violations) -> (Vec<AppVariable>, SecretWrites) {
    let mut out = Vec::new();
    let mut secrets = Vec::new();
    for mut entry in document::named_entries(vars, "app_variables", None, v) {
        let at = |k: &str| format!("app_variables[{}].{k}", entry.index);
        if RUN_OPTIONS.contains(&entry.name.as_str()) {
            v.push(
                at("name"),
                "reserved",
                format!("{:?} is a run option (params.{0}), not a variable name", entry.name),
            );
        }
        let required = document::opt_bool(entry.obj, "required", &at("required"), v).unwrap_or(false);
        let encrypted = document::opt_bool(entry.obj, "encrypted", &at("encrypted"), v).unwrap_or(false);
        document::string(entry.obj, "description", &at("description"), None, v);
        let default_value = entry.obj.get("default_value").filter(|d| !d.is_null()).cloned();
        let mut value = entry.obj.get("value").filter(|d| !d.is_null()).cloned();
        if encrypted {
            if default_value.is_some() {
                v.push(
                    at("default_value"),
                    "encrypted_default",
                    "an encrypted variable cannot have a default value in clear",
                );
            }
            value = None;
            document::take_encrypted_value(&mut entry, "app_variables", &mut secrets, v);
        }
        out.push(AppVariable { name: entry.name, value, default_value, required, encrypted });
    }
    (out, secrets)
}

fn check_graph(steps: &[AppStep], v: &mut Violations) {
    let names: BTreeMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut ok = true;
    for (i, step) in steps.iter().enumerate() {
        let mut targets = BTreeSet::new();
        for (j, target) in step.output_to.iter().enumerate() {
            let field = format!("steps[{i}].output_to[{j}]");
            if !names.contains_key(target.as_str()) {
                v.push(field, "unknown_step", format!("no step of this application is named {target:?}"));
                ok = false;
            } else if target == &step.name {
                v.push(field, "self_reference", "a step cannot output to itself");
                ok = false;
            } else if !targets.insert(target.as_str()) {
                v.push(field, "unique", format!("{target:?} is listed twice"));
            }
        }
    }
    if ok {
        if let Err(cycle) = topological_waves(steps) {
            v.push("steps", "acyclic", format!("output_to links form a cycle through steps {}", cycle.join(", ")));
        }
    }
}

/// Kahn's algorithm by waves. On a cycle, returns the names of the steps
/// left on it (or downstream of it).
fn topological_waves(steps: &[AppStep]) -> Result<Vec<Vec<usize>>, Vec<String>> {
    let index: BTreeMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut indegree = vec![0usize; steps.len()];
    for s in steps {
        for t in &s.output_to {
            if let Some(&j) = index.get(t.as_str()) {
                indegree[j] += 1;
            }
        }
    }
    let mut waves = Vec::new();
    let mut current: Vec<usize> = (0..steps.len()).filter(|&i| indegree[i] == 0).collect();
    let mut placed = 0;
    while !current.is_empty() {
        placed += current.len();
        let mut next = Vec::new();
        for &i in &current {
            for t in &steps[i].output_to {
                if let Some(&j) = index.get(t.as_str()) {
                    indegree[j] -= 1;
                    if indegree[j] == 0 {
                        next.push(j);
                    }
                }
            }
        }
        next.sort_unstable();
        waves.push(std::mem::replace(&mut current, next));
    }
    if placed == steps.len() {
        Ok(waves)
    } else {
        Err((0..steps.len()).filter(|&i| indegree[i] > 0).map(|i| steps[i].name.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::secret::{SecretString, SecretWrite};

    fn violations(body: Value) -> Vec<(String, String)> {
        Application::parse(body).unwrap_err().0.into_iter().map(|v| (v.field, v.rule)).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn accepts_the_spec_example_and_keeps_unknown_keys() {
        let body = json!({
            "author": "ScienceLogic, Inc.",
            "configuration": "",
            "description": "Read SL1 and ServiceNow devices and write them to a cache.",
            "friendly_name": "Cache SL1 Devices using GraphQL",
            "name": "cache_em7_device_data",
            "generate_report": true,
            "queue": "test_queue",
            "syncpack": "base_steps_syncpack",
            "steps": [
                {"name": "GETgoogle.com", "file": "QueryREST", "prefix_url": "http://google.com",
                 "method": "GET", "retry_max": 5, "retry_backoff": true, "retry_backoff_max": 600,
                 "retry_countdown": 120, "output_to": ["next_step"]},
                {"name": "next_step", "file": "someOtherTask"}
            ],
            "app_variables": [{"name": "exampleVariable", "value": "exampleValue", "required": true,
                               "sample_value": "SampleValue", "default_value": "DefaultValue"}]
        });
        let up = Application::parse(body.clone()).unwrap();
        let app = &up.application;
        assert_eq!(Value::Object(app.document().clone()), body, "document kept as written");
        assert_eq!(app.name(), "cache_em7_device_data");
        assert_eq!(app.configuration(), None);
        assert_eq!(app.queue(), Some("test_queue"));
        let first = &app.steps()[0];
        assert_eq!(
            first.retry,
            RetryOptions { max: 5, backoff: true, jitter: false, backoff_max: 600, countdown: 120 }
        );
        assert_eq!(first.parameters.keys().collect::<Vec<_>>(), ["prefix_url", "method"]);
        assert_eq!(app.steps()[1].retry, RetryOptions::default());
        assert_eq!(app.inputs_of("next_step"), ["GETgoogle.com"]);
        assert!(up.secrets.is_empty());
    }

    #[test]
    fn waves_group_independent_steps() {
        let up = Application::parse(json!({"name": "a", "steps": [
            {"name": "a", "file": "S", "output_to": ["c"]},
            {"name": "b", "file": "S", "output_to": ["c"]},
            {"name": "c", "file": "S", "output_to": ["d"]},
            {"name": "d", "file": "S"},
        ]}))
        .unwrap();
        let waves: Vec<Vec<&str>> =
            up.application.waves().iter().map(|w| w.iter().map(|s| s.name.as_str()).collect()).collect();
        assert_eq!(waves, vec![vec!["a", "b"], vec!["c"], vec!["d"]]);
        assert_eq!(up.application.descendants_of("b"), ["c", "d"]);
        assert_eq!(up.application.descendants_of("d"), Vec::<&str>::new());
    }

    #[test]
    fn refuses_bad_documents_naming_each_field_and_rule() {
        assert_eq!(violations(json!([])), pairs(&[("body", "type")]));
        assert_eq!(violations(json!({"steps": []})), pairs(&[("name", "required"), ("steps", "min_items")]));
        assert_eq!(
            violations(json!({"name": "x/../y", "queue": 3, "steps": [
                {"name": "a", "file": "S", "retry_max": -1, "retry_backoff": "yes"},
                {"name": "a"},
                "nope"
            ]})),
            pairs(&[
                ("name", "name_syntax"),
                ("queue", "type"),
                ("steps[0].retry_max", "type"),
                ("steps[0].retry_backoff", "type"),
                ("steps[1].name", "unique"),
                ("steps[1].file", "required"),
                ("steps[2]", "type"),
            ])
        );
    }

    #[test]
    fn refuses_unknown_targets_self_links_and_cycles() {
        assert_eq!(
            violations(json!({"name": "a", "steps": [
                {"name": "a", "file": "S", "output_to": ["ghost", "a"]},
            ]})),
            pairs(&[("steps[0].output_to[0]", "unknown_step"), ("steps[0].output_to[1]", "self_reference")])
        );
        let err = Application::parse(json!({"name": "a", "steps": [
            {"name": "x", "file": "S", "output_to": ["y"]},
            {"name": "y", "file": "S", "output_to": ["z"]},
            {"name": "z", "file": "S", "output_to": ["x"]},
            {"name": "free", "file": "S"},
        ]}))
        .unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!((err.0[0].field.as_str(), err.0[0].rule.as_str()), ("steps", "acyclic"));
        assert!(err.0[0].message.contains("x, y, z"), "{}", err.0[0].message);
    }

    #[test]
    fn retry_options_must_be_whole_numbers_and_booleans() {
        for bad in [json!(1.5), json!("3"), json!(true), json!(-2), json!(1_000_000)] {
            let got = violations(json!({"name": "a", "steps": [{"name": "s", "file": "S", "retry_max": bad}]}));
            assert_eq!(got, pairs(&[("steps[0].retry_max", "type")]), "{bad}");
        }
    }

    #[test]
    fn encrypted_variables_leave_the_document_and_become_secret_writes() {
        let up = Application::parse(json!({"name": "a", "steps": [{"name": "s", "file": "S"}],
        "app_variables": [
            {"name": "token", "value": "s3cr3t", "encrypted": true},
            {"name": "kept", "value": null, "encrypted": true},
            {"name": "plain", "value": "p"}
        ]}))
        .unwrap();
        let text = serde_json::to_string(up.application.document()).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(up.secrets.len(), 2);
        assert_eq!(up.secrets[0], ("token".to_string(), SecretWrite::Set(SecretString::new("s3cr3t"))));
        assert_eq!(up.secrets[1], ("kept".to_string(), SecretWrite::Keep));
        assert!(up.application.variables()[0].value.is_none());
        let err = violations(json!({"name": "a", "steps": [{"name": "s", "file": "S"}],
            "app_variables": [{"name": "n", "value": 5, "encrypted": true}, {"name": "n"}]}));
        assert_eq!(err, pairs(&[("app_variables[1].name", "unique"), ("app_variables[0].value", "type")]));
    }

    #[test]
    fn server_keys_are_dropped_so_documents_round_trip() {
        let up = Application::parse(json!({"name": "a", "revision": 3, "created_at": "x",
            "steps": [{"name": "s", "file": "S.py"}]}))
        .unwrap();
        assert!(!up.application.document().contains_key("revision"));
        assert_eq!(up.application.steps()[0].file, "S");
    }
}
