//! Record flows (spec 001): flow documents checked against the stacks they
//! call, stored as revisions with their connections' secrets sealed; runs
//! of a flow started on the engine's queue (one task per run, application
//! `.flow.NAME`), executed page by page by [`run`]; and the per-record
//! errors with their retry data.

mod page;
mod run;
mod source;
mod webhook;

pub use webhook::WebhookRefused;
pub use RUN_TOKEN_PREFIX as FLOW_RUN_TOKEN_PREFIX;

pub(crate) use source::FlowIo;

impl std::fmt::Debug for FlowIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowIo")
    }
}

use std::time::Duration;

use junction_core::flow::document::{parse_flow, Flow};
use junction_core::secret::{SecretString, SecretWrite, SecretWrites};
use junction_core::validation::{Invalid, Violations};
use junction_store::{FlowErrorFilter, FlowErrorRecord, FlowRecord, NewFlowRevision, NewRun, NewTask, RunRecord};
use serde_json::{json, Map, Value};

use crate::runs::uuid;
use crate::{Engine, EngineError, Result};

/// What an API answer shows in place of a sealed connection value.
pub const MASK: &str = "********";
/// The application name of a flow's runs: no user application can start
/// with a dot.
pub const RUN_PREFIX: &str = ".flow.";
/// The step name of a flow run's one task.
pub const FLOW_TASK: &str = "flow";
pub const MAX_ERRORS_LISTED: i64 = 1_000;
/// Records one webhook post may carry (it is one page).
pub const MAX_WEBHOOK_RECORDS: usize = junction_core::flow::document::MAX_PAGE_SIZE;

/// The prefix of a flow run's `bearerToken`.
pub const RUN_TOKEN_PREFIX: &str = "jfr_";

/// How a run of a flow is asked for.
#[derive(Debug, Clone, Default)]
pub struct FlowRunRequest {
    pub triggered_by: Option<String>,
    /// Records to retry: (retryDataKey, step, record) — the run starts each
    /// at its step instead of running the exports.
    pub retry: Vec<(String, String, Value)>,
    /// A webhook post: the export it came to and its records, the run's one page.
    pub webhook: Option<(String, Vec<Value>)>,
    /// `manual` unless said (`schedule` for the scheduler's).
    pub trigger_kind: Option<String>,
    /// The event that triggered the run (a CI/CD job, an XDS activity):
    /// hooks and wrappers get it as `options.event`.
    pub context: Option<Value>,
}

impl FlowRunRequest {
    /// A schedule's or trigger's request for an application run, for a flow.
    pub(crate) fn from_run_request(r: crate::RunRequest) -> FlowRunRequest {
        FlowRunRequest {
            triggered_by: r.triggered_by,
            trigger_kind: Some(r.trigger_kind),
            context: r.context,
            ..Default::default()
        }
    }
}

/// A flow with what is known of it now.
#[derive(Debug, Clone)]
pub struct FlowView {
    pub record: FlowRecord,
    pub offline: Vec<(String, i64, String)>,
    pub last_exports: Vec<(String, i64)>,
}

/// The flow a run belongs to, if it is a flow run.
pub fn flow_of_run(run: &RunRecord) -> Option<&str> {
    run.application.strip_prefix(RUN_PREFIX)
}

/// The objects whose `encrypted` values are sealed: each connection
/// (entry `CONNECTION.KEY`) and each webhook export (entry `@EXPORT.KEY`),
/// with the JSON path that names them.
fn sealed_objects(document: &mut Value) -> Vec<(String, String, &mut Map<String, Value>)> {
    let mut out = Vec::new();
    let Some(doc) = document.as_object_mut() else { return out };
    for (key, value) in doc.iter_mut() {
        match (key.as_str(), value) {
            ("connections", Value::Object(connections)) => {
                for (cname, connection) in connections.iter_mut() {
                    if let Some(encrypted) = connection.get_mut("encrypted").and_then(Value::as_object_mut) {
                        out.push((cname.clone(), format!("connections.{cname}.encrypted"), encrypted));
                    }
                }
            }
            ("pageGenerators", Value::Array(exports)) => {
                for (i, export) in exports.iter_mut().enumerate() {
                    let name = export.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                    if let Some(encrypted) = export.get_mut("encrypted").and_then(Value::as_object_mut) {
                        out.push((format!("@{name}"), format!("pageGenerators[{i}].encrypted"), encrypted));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Splits the sealed values out of a document: the document to store
/// (with `********`) and what to seal.
fn split_secrets(document: &Value) -> std::result::Result<(Value, SecretWrites), Invalid> {
    let mut masked = document.clone();
    let mut writes = SecretWrites::new();
    let mut v = Violations::default();
    for (owner, at, encrypted) in sealed_objects(&mut masked) {
        for (key, value) in encrypted.iter_mut() {
            let entry = format!("{owner}.{key}");
            match value {
                Value::String(s) if s == MASK => writes.push((entry, SecretWrite::Keep)),
                Value::String(s) => {
                    writes.push((entry, SecretWrite::Set(SecretString::new(std::mem::take(s)))));
                    *value = json!(MASK);
                }
                _ => v.push(
                    format!("{at}.{key}"),
                    "type",
                    "an encrypted value is a string (it is sealed and never shown again)",
                ),
            }
        }
    }
    v.finish((masked, writes))
}

/// The document with its sealed values put back, for running it.
fn unmask(document: &Value, secrets: &[(String, SecretString)]) -> Value {
    let mut full = document.clone();
    for (owner, _, encrypted) in sealed_objects(&mut full) {
        for (key, slot) in encrypted.iter_mut() {
            let entry = format!("{owner}.{key}");
            if let Some((_, value)) = secrets.iter().find(|(e, _)| *e == entry) {
                *slot = json!(value.expose());
            }
        }
    }
    full
}

impl Engine {
    /// Checks a flow document (its shape, and that every stack function it
    /// names is exported by that stack) and stores it as the flow's next
    /// revision.
    pub async fn put_flow(&self, document: &Value) -> Result<FlowRecord> {
        let (masked, writes) = split_secrets(document)?;
        let flow = parse_flow(&masked)?;
        self.check_functions(&flow).await?;
        let record =
            self.store.put_flow(&NewFlowRevision { name: &flow.name, document: &masked, secrets: writes }).await?;
        self.put_flow_schedule(&flow).await?;
        Ok(record)
    }

    /// A flow's `schedule` is a schedule like an application's (id and
    /// application `.flow.NAME`); a document without one removes it.
    async fn put_flow_schedule(&self, flow: &Flow) -> Result<()> {
        let id = format!("{RUN_PREFIX}{}", flow.name);
        let Some(entry) = &flow.schedule else {
            if self.store.delete_schedule(&id).await? {
                self.signals.schedules_changed.notify_one();
            }
            return Ok(());
        };
        let now = self.store.now();
        let anchor = match self.store.get_schedule(&id).await? {
            Some(old) => old.created_at,
            None => now,
        };
        let put = junction_store::PutSchedule {
            id: id.clone(),
            application: id,
            entry_id: entry.entry_id.clone(),
            kind: entry.schedule_type.clone(),
            info: entry.schedule_info.clone(),
            timezone: entry.timezone.clone(),
            params: json!({}),
            enabled: entry.enabled,
            next_fire_at: crate::scheduler::first_tick(entry, now, anchor),
            anchor,
        };
        self.store.put_schedule(&put).await?;
        self.signals.schedules_changed.notify_one();
        Ok(())
    }

    /// Every hook and wrapper must be a function the stack's current
    /// version exports.
    async fn check_functions(&self, flow: &Flow) -> Result<()> {
        let mut v = Violations::default();
        for (at, hook) in flow.functions() {
            let Some(stack) = self.store.get_stack(&hook.stack).await? else {
                v.push(
                    format!("{}.stack", at.trim_end_matches(".function")),
                    "unknown_stack",
                    format!("no stack {:?}", hook.stack),
                );
                continue;
            };
            let versions = self.store.stack_versions(&stack.name).await?;
            let Some(current) = versions.iter().find(|s| s.version == stack.version) else { continue };
            if !exports_function(&current.functions, &hook.function) {
                v.push(
                    at.clone(),
                    "unknown_function",
                    format!("stack {:?} exports no function {:?}", hook.stack, hook.function),
                );
            }
        }
        Ok(v.finish(())?)
    }

    pub async fn get_flow(&self, name: &str) -> Result<FlowView> {
        let record = self.store.get_flow(name).await?.ok_or_else(|| EngineError::NotFound(format!("flow {name:?}")))?;
        let offline = self.store.flow_offline_connections(name).await?;
        let last_exports = self.store.flow_last_exports(name).await?;
        Ok(FlowView { record, offline, last_exports })
    }

    pub async fn list_flows(&self) -> Result<Vec<FlowRecord>> {
        Ok(self.store.list_flows().await?)
    }

    pub async fn delete_flow(&self, name: &str) -> Result<()> {
        match self.store.delete_flow(name).await? {
            true => {
                if self.store.delete_schedule(&format!("{RUN_PREFIX}{name}")).await? {
                    self.signals.schedules_changed.notify_one();
                }
                Ok(())
            }
            false => Err(EngineError::NotFound(format!("flow {name:?}"))),
        }
    }

    /// A stored revision, checked again and with its secrets, ready to run.
    pub(crate) async fn load_flow(&self, name: &str, revision: i64) -> Result<(Flow, Vec<String>)> {
        let record = self
            .store
            .get_flow_revision(name, revision)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("flow {name:?} revision {revision}")))?;
        let secrets = self.store.flow_secrets(name).await?;
        let full = unmask(&record.document, &secrets);
        let flow = parse_flow(&full)?;
        let values = secrets.iter().map(|(_, s)| s.expose().to_string()).filter(|s| !s.is_empty()).collect();
        Ok((flow, values))
    }

    /// The `bearerToken` hooks of a run get: the run id signed with the
    /// store's key, so every server of the store knows it; it is good only
    /// while the run goes, and only for reading that flow and that run.
    pub(crate) fn flow_run_token(&self, run_id: &str) -> String {
        format!("{RUN_TOKEN_PREFIX}{run_id}.{}", self.store.sign(&format!("flow-run:{run_id}")))
    }

    /// (flow, run id) of a valid run token of a run still going.
    pub async fn flow_run_of_token(&self, token: &str) -> Result<Option<(String, String)>> {
        let Some((run_id, signature)) = token.strip_prefix(RUN_TOKEN_PREFIX).and_then(|t| t.split_once('.')) else {
            return Ok(None);
        };
        if !self.store.verify_signature(&format!("flow-run:{run_id}"), signature) {
            return Ok(None);
        }
        let Some(run) = self.store.get_run(run_id).await? else { return Ok(None) };
        Ok(match flow_of_run(&run) {
            Some(flow) if !run.state.is_final() => Some((flow.to_string(), run.id.clone())),
            _ => None,
        })
    }

    /// Queues a run of the flow's latest revision.
    pub async fn start_flow_run(&self, name: &str, request: FlowRunRequest) -> Result<RunRecord> {
        self.can_run()?;
        let run = self.prepare_flow_run(name, request).await?;
        let (run, _) = self.store.create_run(&run).await?;
        self.signals.work_available.notify_waiters();
        Ok(run)
    }

    /// A run of the flow's latest revision, not stored yet (the scheduler
    /// fires it with its tick).
    pub(crate) async fn prepare_flow_run(&self, name: &str, request: FlowRunRequest) -> Result<NewRun> {
        let record = self.store.get_flow(name).await?.ok_or_else(|| EngineError::NotFound(format!("flow {name:?}")))?;
        let mut params = json!({});
        let mut trigger_kind = request.trigger_kind.unwrap_or_else(|| "manual".into());
        if !request.retry.is_empty() {
            trigger_kind = "retry".into();
            params["retry"] = request
                .retry
                .iter()
                .map(|(key, step, data)| json!({"retryDataKey": key, "step": step, "data": data}))
                .collect();
        }
        if let Some((export, records)) = &request.webhook {
            trigger_kind = "webhook".into();
            params["webhook"] = webhook::webhook_params(export, records);
        }
        Ok(NewRun {
            id: uuid(),
            application: format!("{RUN_PREFIX}{name}"),
            app_revision: record.revision,
            queue: "default".into(),
            trigger_kind,
            triggered_by: request.triggered_by,
            configuration: None,
            params,
            secret_params: Vec::new(),
            context: request.context,
            log_level: 20,
            idempotency_key: None,
            tasks: vec![NewTask {
                id: uuid(),
                step_name: FLOW_TASK.into(),
                step_index: 0,
                step_file: RUN_PREFIX.trim_end_matches('.').into(),
                step_version: None,
                waiting_on: 0,
            }],
            max_active: None,
        })
    }

    /// A replay of a flow run: the flow's latest revision again (a retry
    /// run's records again).
    pub(crate) async fn replay_flow_run(&self, flow: &str, old: &RunRecord, who: &str) -> Result<RunRecord> {
        let request = FlowRunRequest {
            triggered_by: Some(format!("{who} (replay of {})", old.id)),
            retry: retry_of(&old.params),
            webhook: webhook::webhook_of(&old.params),
            trigger_kind: Some("replay".into()),
            context: old.context.clone(),
        };
        self.start_flow_run(flow, request).await
    }

    /// Starts a run and waits up to `wait` for it to end.
    pub async fn run_flow(&self, name: &str, request: FlowRunRequest, wait: Duration) -> Result<RunRecord> {
        let run = self.start_flow_run(name, request).await?;
        if wait.is_zero() {
            return Ok(run);
        }
        self.wait_run(&run.id, wait).await
    }

    /// The counters of a flow run: live while it goes (its last committed
    /// page), final once it ended.
    pub async fn flow_run_progress(&self, run: &RunRecord) -> Result<Value> {
        if let Some(progress) = self.store.flow_progress(&run.id).await? {
            return Ok(progress.counters);
        }
        // Nothing committed yet: every step at zero.
        let name = flow_of_run(run).unwrap_or_default();
        Ok(match self.load_flow(name, run.app_revision).await {
            Ok((flow, _)) => empty_counters(&flow),
            Err(_) => json!({}),
        })
    }

    pub async fn flow_errors(&self, name: &str, filter: &FlowErrorFilter<'_>) -> Result<Vec<FlowErrorRecord>> {
        self.store.get_flow(name).await?.ok_or_else(|| EngineError::NotFound(format!("flow {name:?}")))?;
        let mut filter = filter.clone();
        filter.limit = filter.limit.clamp(1, MAX_ERRORS_LISTED);
        Ok(self.store.list_flow_errors(name, &filter).await?)
    }

    /// Retries stored errors: the given retry data keys, or every open one
    /// (of `step`, if given). The records re-enter the step that failed
    /// them in a new run.
    pub async fn retry_flow_errors(
        &self,
        name: &str,
        keys: Option<&[String]>,
        step: Option<&str>,
        who: &str,
    ) -> Result<RunRecord> {
        let (flow, _) = {
            let record =
                self.store.get_flow(name).await?.ok_or_else(|| EngineError::NotFound(format!("flow {name:?}")))?;
            self.load_flow(name, record.revision).await?
        };
        if let Some(step) = step {
            if !flow.step_names().contains(&step) {
                return Err(Invalid::one("step", "unknown_step", format!("the flow has no step {step:?}")).into());
            }
        }
        let retry = self.store.flow_retry_data(name, keys, step).await?;
        if let Some(keys) = keys {
            let mut v = Violations::default();
            for (i, key) in keys.iter().enumerate() {
                if !retry.iter().any(|(k, _, _)| k == key) {
                    v.push(format!("retryDataKeys[{i}]"), "unknown_key", format!("no retry data {key:?} in this flow"));
                }
            }
            v.finish(())?;
        }
        if retry.is_empty() {
            return Err(Invalid::one("retryDataKeys", "nothing_to_retry", "no open error with retry data").into());
        }
        self.start_flow_run(name, FlowRunRequest { triggered_by: Some(who.to_string()), retry, ..Default::default() })
            .await
    }

    pub async fn resolve_flow_errors(
        &self,
        name: &str,
        keys: Option<&[String]>,
        step: Option<&str>,
        who: &str,
    ) -> Result<u64> {
        self.store.get_flow(name).await?.ok_or_else(|| EngineError::NotFound(format!("flow {name:?}")))?;
        if let Some(keys) = keys {
            let known = self.store.flow_retry_data(name, Some(keys), None).await?;
            let mut v = Violations::default();
            for (i, key) in keys.iter().enumerate() {
                if !known.iter().any(|(k, _, _)| k == key) {
                    v.push(format!("retryDataKeys[{i}]"), "unknown_key", format!("no retry data {key:?} in this flow"));
                }
            }
            v.finish(())?;
        }
        Ok(self.store.resolve_flow_errors(name, keys, step, who).await?)
    }

    /// The record a retry of `key` will start from, and editing it.
    pub async fn flow_retry_record(&self, name: &str, key: &str) -> Result<(String, Value)> {
        let found = self.store.flow_retry_data(name, Some(&[key.to_string()]), None).await?;
        found
            .into_iter()
            .next()
            .map(|(_, step, data)| (step, data))
            .ok_or_else(|| EngineError::NotFound(format!("retry data {key:?} of flow {name:?}")))
    }

    pub async fn put_flow_retry_record(&self, name: &str, key: &str, data: &Value) -> Result<()> {
        match self.store.put_flow_retry_data(name, key, data).await? {
            true => Ok(()),
            false => Err(EngineError::NotFound(format!("retry data {key:?} of flow {name:?}"))),
        }
    }
}

/// The records a retry run was started with: (retryDataKey, step, record).
pub(crate) fn retry_of(params: &Value) -> Vec<(String, String, Value)> {
    let text = |i: &Value, k: &str| i[k].as_str().unwrap_or_default().to_string();
    params["retry"]
        .as_array()
        .map(|items| items.iter().map(|i| (text(i, "retryDataKey"), text(i, "step"), i["data"].clone())).collect())
        .unwrap_or_default()
}

/// Whether a stack version's loaded modules export `function` on any of
/// their objects (`{"index.js": {"hooks": [...], "wrappers": [...]}}`).
fn exports_function(functions: &Value, function: &str) -> bool {
    fn walk(v: &Value, f: &str) -> bool {
        match v {
            Value::String(s) => s == f,
            Value::Array(items) => items.iter().any(|i| walk(i, f)),
            Value::Object(m) => m.values().any(|i| walk(i, f)),
            _ => false,
        }
    }
    walk(functions, function)
}

/// The counters of every step, as the API shows them.
pub(crate) fn empty_counters(flow: &Flow) -> Value {
    let mut out = Map::new();
    for e in &flow.page_generators {
        out.insert(e.name.clone(), json!({"pagesGenerated": 0, "success": 0, "error": 0, "ignore": 0}));
    }
    for p in &flow.page_processors {
        out.insert(p.name.clone(), json!({"pagesProcessed": 0, "success": 0, "error": 0, "ignore": 0}));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_split_out_and_put_back() {
        let doc = json!({"connections": {"crm": {"type": "http", "encrypted": {"token": "t0ps3cret", "old": MASK}}}});
        let (masked, writes) = split_secrets(&doc).unwrap();
        assert_eq!(masked["connections"]["crm"]["encrypted"]["token"], MASK);
        assert!(!masked.to_string().contains("t0ps3cret"));
        assert_eq!(writes.len(), 2);
        assert!(matches!(writes[1].1, SecretWrite::Keep));
        let full = unmask(&masked, &[("crm.token".into(), SecretString::new("t0ps3cret".to_string()))]);
        assert_eq!(full["connections"]["crm"]["encrypted"]["token"], "t0ps3cret");
        let bad = split_secrets(&json!({"connections": {"c": {"encrypted": {"n": 1}}}})).unwrap_err();
        assert_eq!(bad.0[0].field, "connections.c.encrypted.n");
    }

    #[test]
    fn exported_functions_are_found_in_any_object() {
        let f = json!({"index.js": {"hooks": ["preSavePage"], "wrappers": ["exportOrders"]}});
        assert!(exports_function(&f, "exportOrders"));
        assert!(!exports_function(&f, "importOrders"));
    }
}
