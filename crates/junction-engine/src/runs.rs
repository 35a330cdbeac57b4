//! Starting, waiting for, revoking and replaying runs (DESIGN.md, "The path
//! of a run", step 1): the application version, variables and
//! configuration are resolved, and the run with all its tasks is inserted
//! in one transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use junction_core::application::Application;
use junction_core::secret::SecretString;
use junction_core::validation::Violations;
use junction_store::{NewRun, NewTask, RunRecord};
use serde_json::{Map, Value};

use crate::{Engine, EngineError, Result};

/// What starts a run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Variable values for this run (override the application's); may also
    /// carry the options `queue`, `configuration`, `log_level`.
    pub params: Map<String, Value>,
    pub configuration: Option<String>,
    pub queue: Option<String>,
    pub log_level: Option<i64>,
    /// `manual`, `schedule`, `automated`, `replay`, `step`.
    pub trigger_kind: String,
    pub triggered_by: Option<String>,
    /// Trigger context (spec 000's plutoraValues).
    pub context: Option<Value>,
    pub idempotency_key: Option<String>,
    /// Secret values for this run (a replay's), sealed whatever the
    /// application says now.
    pub secret_params: Vec<(String, SecretString)>,
    /// Refuse the run when this many runs of the application with the same
    /// trigger kind are going.
    pub max_active: Option<i64>,
}

impl Engine {
    /// Starts a run of the latest revision of `app`.
    pub async fn start_run(&self, app: &str, request: RunRequest) -> Result<RunRecord> {
        self.can_run()?;
        let record = self
            .store
            .get_application(app)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("application {app:?}")))?;
        self.start_run_of(&record.application, record.revision, request).await
    }

    async fn start_run_of(&self, app: &Application, revision: i64, request: RunRequest) -> Result<RunRecord> {
        let run = self.prepare_run(app, revision, request).await?;
        let (record, created) = self.store.create_run(&run).await?;
        if created {
            self.signals.work_available.notify_waiters();
        }
        Ok(record)
    }

    /// Everything a run needs, resolved and checked, ready to insert.
    pub(crate) async fn prepare_run(&self, app: &Application, revision: i64, request: RunRequest) -> Result<NewRun> {
        let lookups = self.lookups(&[app], &wanted_configurations(app, &request)).await?;
        build_run(app, revision, request, &lookups)
    }

    /// Runs of the latest revisions of several applications, prepared
    /// together: the applications are read at once (one by one only when
    /// one of them cannot be read, so it cannot hold back the others) and
    /// what the runs need in a few queries. One answer per request, in
    /// order; an application that is missing or cannot run answers an error.
    pub(crate) async fn prepare_runs(&self, requests: Vec<(&str, RunRequest)>) -> Result<Vec<Result<NewRun>>> {
        // Runs of record flows (`.flow.NAME`, from schedules and triggers)
        // are prepared by the flow family, the rest below, in one order.
        if requests.iter().any(|(app, _)| app.starts_with(crate::flows::RUN_PREFIX)) {
            let mut out = Vec::with_capacity(requests.len());
            for (app, request) in requests {
                out.push(match app.strip_prefix(crate::flows::RUN_PREFIX) {
                    Some(flow) => {
                        self.prepare_flow_run(flow, crate::flows::FlowRunRequest::from_run_request(request)).await
                    }
                    None => {
                        Box::pin(self.prepare_runs(vec![(app, request)])).await?.pop().expect("one request, one run")
                    }
                });
            }
            return Ok(out);
        }
        let mut names: Vec<&str> = requests.iter().map(|(app, _)| *app).collect();
        names.sort_unstable();
        names.dedup();
        let apps: std::collections::HashMap<String, junction_store::ApplicationRecord> =
            match self.store.get_applications(&names).await {
                Ok(list) => list.into_iter().map(|a| (a.application.name().to_string(), a)).collect(),
                Err(junction_store::StoreError::Corrupt(_)) => {
                    let mut map = std::collections::HashMap::new();
                    for n in &names {
                        if let Ok(Some(a)) = self.store.get_application(n).await {
                            map.insert(n.to_string(), a);
                        }
                    }
                    map
                }
                Err(e) => return Err(e.into()),
            };
        let app_refs: Vec<&Application> = apps.values().map(|a| &a.application).collect();
        let configs: Vec<String> = requests
            .iter()
            .filter_map(|(app, r)| apps.get(*app).map(|a| wanted_configurations(&a.application, r)))
            .flatten()
            .collect();
        let lookups = self.lookups(&app_refs, &configs).await?;
        Ok(requests
            .into_iter()
            .map(|(app, request)| match apps.get(app) {
                Some(a) => build_run(&a.application, a.revision, request, &lookups),
                None => Err(EngineError::NotFound(format!("application {app:?}"))),
            })
            .collect())
    }

    /// What preparing runs of `apps` needs from the store, read in a few
    /// queries for all of them.
    pub(crate) async fn lookups(&self, apps: &[&Application], configurations: &[String]) -> Result<Lookups> {
        let names: Vec<&str> = apps.iter().map(|a| a.name()).collect();
        let mut files: Vec<&str> = apps.iter().flat_map(|a| a.steps().iter().map(|s| s.file.as_str())).collect();
        files.sort_unstable();
        files.dedup();
        let mut configs: Vec<&str> = configurations.iter().map(String::as_str).collect();
        configs.sort_unstable();
        configs.dedup();
        Ok(Lookups {
            secret_names: self.store.secret_names_of(&names).await?,
            steps: self.store.step_versions(&files).await?,
            configurations: self.store.configuration_names(&configs).await?,
        })
    }
}

/// Facts about the store a run is prepared from (see [`Engine::lookups`]).
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    /// Sealed variable names by application.
    pub secret_names: std::collections::HashMap<String, Vec<String>>,
    /// Current version by step name.
    pub steps: std::collections::HashMap<String, i64>,
    /// Configurations that exist (of those asked about).
    pub configurations: std::collections::HashSet<String>,
}

/// The configurations a run of `app` may name (to look up beforehand).
pub(crate) fn wanted_configurations(app: &Application, request: &RunRequest) -> Vec<String> {
    let from_params = request.params.get("configuration").and_then(Value::as_str);
    [request.configuration.as_deref(), from_params, app.configuration()]
        .into_iter()
        .flatten()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Resolves and checks a run without I/O: the application's variables
/// (`params` override `value`, then `default_value`), queue, configuration,
/// each step's current version.
pub(crate) fn build_run(app: &Application, revision: i64, request: RunRequest, lookups: &Lookups) -> Result<NewRun> {
    let mut v = Violations::default();
    let mut params = request.params.clone();
    let str_option = |params: &mut Map<String, Value>, key: &str, v: &mut Violations| match params.remove(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            v.push(format!("params.{key}"), "type", format!("must be a string, not {other}"));
            None
        }
    };
    let queue_param = str_option(&mut params, "queue", &mut v);
    let config_param = str_option(&mut params, "configuration", &mut v);
    let log_level = match params.remove("log_level") {
        None | Some(Value::Null) => request.log_level,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|l| (0..=50).contains(&l)) => n.as_i64(),
        Some(other) => {
            v.push("params.log_level", "type", format!("must be a whole number from 0 to 50, not {other}"));
            None
        }
    };
    for key in junction_core::application::RUN_OPTIONS {
        params.remove(key);
    }
    if let Some(l) = log_level.filter(|l| !(0..=50).contains(l)) {
        v.push("log_level", "range", format!("must be a whole number from 0 to 50, not {l}"));
    }
    // An empty name means "not given"; any other must be a valid name, so
    // a run never waits on a queue no worker can serve.
    let named = |field: &str, given: Option<String>, v: &mut Violations| match given.filter(|s| !s.is_empty()) {
        Some(n) => match junction_core::name::check_name(field, &n) {
            Ok(()) => Some(n),
            Err(e) => {
                v.add(e);
                None
            }
        },
        None => None,
    };
    let queue = named("queue", request.queue.or(queue_param), &mut v)
        .or_else(|| app.queue().map(str::to_string))
        .unwrap_or_else(|| "default".into());
    let configuration = named("configuration", request.configuration.or(config_param), &mut v)
        .or_else(|| app.configuration().map(str::to_string));
    if let Some(c) = &configuration {
        if !lookups.configurations.contains(c) {
            v.push("configuration", "exists", format!("no configuration named {c:?} is stored"));
        }
    }

    // Variables: this run's values override the application's.
    let sealed: Vec<String> = lookups.secret_names.get(app.name()).cloned().unwrap_or_default();
    let mut plain = Map::new();
    let mut secret = request.secret_params.clone();
    for var in app.variables() {
        let given = params.remove(&var.name).filter(|x| !x.is_null());
        if var.encrypted {
            match given {
                Some(Value::String(s)) => secret.push((var.name.clone(), SecretString::new(s))),
                Some(_) => {
                    v.push(format!("params.{}", var.name), "type", "an encrypted variable's value must be a string")
                }
                None if var.required && !sealed.contains(&var.name) && !secret.iter().any(|(n, _)| *n == var.name) => v
                    .push(
                        format!("params.{}", var.name),
                        "required",
                        format!("{:?} is required and has no value", var.name),
                    ),
                None => {}
            }
            continue;
        }
        match given.or_else(|| var.value.clone()).or_else(|| var.default_value.clone()) {
            Some(value) => {
                plain.insert(var.name.clone(), value);
            }
            None if var.required => v.push(
                format!("params.{}", var.name),
                "required",
                format!("{:?} is required and has no value or default", var.name),
            ),
            None => {}
        }
    }
    // Undeclared params are one-time variables (spec 004).
    plain.extend(params);

    let mut tasks = Vec::with_capacity(app.steps().len());
    for (i, step) in app.steps().iter().enumerate() {
        let version = match lookups.steps.get(&step.file) {
            Some(v) => Some(*v),
            None => {
                v.push(format!("steps[{i}].file"), "exists", format!("no step named {:?} is stored", step.file));
                None
            }
        };
        tasks.push(NewTask {
            id: uuid(),
            step_name: step.name.clone(),
            step_index: i as i64,
            step_file: step.file.clone(),
            step_version: version,
            waiting_on: app.inputs_of(&step.name).len() as i64,
        });
    }
    v.finish(())?;
    let run = NewRun {
        id: format!("isapp-{}", uuid()),
        application: app.name().to_string(),
        app_revision: revision,
        queue,
        trigger_kind: if request.trigger_kind.is_empty() { "manual".into() } else { request.trigger_kind },
        triggered_by: request.triggered_by,
        configuration,
        params: Value::Object(plain),
        secret_params: secret,
        context: request.context,
        log_level: log_level.unwrap_or(20),
        idempotency_key: request.idempotency_key,
        tasks,
        max_active: request.max_active,
    };
    Ok(run)
}

impl Engine {
    /// Runs one stored step alone (spec 004's `POST /steps/run`), with
    /// `parameters` as its parameters: checked against what the step
    /// declares (a missing required one is refused).
    pub async fn run_step(&self, name: &str, parameters: Map<String, Value>, triggered_by: &str) -> Result<RunRecord> {
        self.can_run()?;
        let step = self.store.get_step(name).await?.ok_or_else(|| EngineError::NotFound(format!("step {name:?}")))?;
        let mut v = Violations::default();
        for p in step.parameters.iter().filter(|p| p.required && p.default_value.is_none()) {
            if parameters.get(&p.name).is_none_or(Value::is_null) {
                v.push(p.name.clone(), "required", format!("the step requires parameter {:?}", p.name));
            }
        }
        v.finish(())?;
        let app = Application::single_step(name, parameters)?;
        let revision = self.store.put_adhoc_revision(&app).await?;
        let request = RunRequest {
            trigger_kind: "step".into(),
            triggered_by: Some(triggered_by.to_string()),
            ..RunRequest::default()
        };
        self.start_run_of(&app, revision, request).await
    }

    /// The run, once it has ended or `timeout` has passed (whichever is
    /// first).
    pub async fn wait_run(&self, id: &str, timeout: Duration) -> Result<RunRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ended = self.signals.run_ended.subscribe();
        loop {
            let run = self.store.get_run(id).await?.ok_or_else(|| EngineError::NotFound(format!("run {id:?}")))?;
            if run.state.is_final() || tokio::time::Instant::now() >= deadline {
                return Ok(run);
            }
            // In-process completions wake us at once; another process's
            // are seen by the poll.
            let poll = tokio::time::sleep(Duration::from_millis(250));
            tokio::select! {
                _ = ended.recv() => {}
                _ = poll => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Revokes a run: running steps are stopped, waiting ones cancelled.
    pub async fn revoke_run(&self, id: &str, who: &str) -> Result<()> {
        let reason = format!("revoked by {who}");
        let started = self.store.revoke_run(id, &reason).await?;
        for task in started {
            self.signals.stop(&task, &reason);
        }
        let _ = self.signals.run_ended.send(id.to_string());
        Ok(())
    }

    /// Revokes every run that has not ended; returns how many.
    pub async fn revoke_all(&self, who: &str) -> Result<usize> {
        let mut n = 0;
        for id in self.store.active_runs().await? {
            match self.revoke_run(&id, who).await {
                Ok(()) => n += 1,
                Err(EngineError::Conflict(_)) => {} // ended meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// A new run with the same variables, configuration and queue as `id`.
    pub async fn replay_run(&self, id: &str, who: &str) -> Result<RunRecord> {
        self.can_run()?;
        let old = self.store.get_run(id).await?.ok_or_else(|| EngineError::NotFound(format!("run {id:?}")))?;
        if let Some(flow) = crate::flows::flow_of_run(&old) {
            return self.replay_flow_run(flow, &old, who).await;
        }
        let app = self.store.get_application(&old.application).await?.ok_or_else(|| {
            EngineError::Conflict(format!(
                "run {id} cannot be replayed: its application {:?} was deleted",
                old.application
            ))
        })?;
        let mut params = old.params.as_object().cloned().unwrap_or_default();
        let secret_params = self.store.run_secret_params(id).await?;
        for (name, _) in &secret_params {
            params.remove(name);
        }
        let request = RunRequest {
            params,
            configuration: old.configuration.clone(),
            queue: Some(old.queue.clone()),
            log_level: Some(old.log_level),
            trigger_kind: "replay".into(),
            triggered_by: Some(format!("{who} (replay of {id})")),
            context: old.context.clone(),
            idempotency_key: None,
            secret_params,
            max_active: None,
        };
        self.start_run_of(&app.application, app.revision, request).await
    }

    /// The run a task id names: the run itself, or the run of a step task.
    pub async fn find_run(&self, id: &str) -> Result<(RunRecord, Option<junction_store::TaskRecord>)> {
        if let Some(run) = self.store.get_run(id).await? {
            return Ok((run, None));
        }
        let task = self.store.get_task(id).await?.ok_or_else(|| EngineError::NotFound(format!("task {id:?}")))?;
        let run = self
            .store
            .get_run(&task.run_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("run {:?}", task.run_id)))?;
        Ok((run, Some(task)))
    }
}

pub(crate) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Masked variables as the API shows them.
pub fn masked_vars(run: &RunRecord, secret_names: &[String]) -> Value {
    let mut vars: BTreeMap<String, Value> = run.params.as_object().cloned().unwrap_or_default().into_iter().collect();
    for name in secret_names {
        vars.insert(name.clone(), Value::String(junction_runtime::MASK.into()));
    }
    serde_json::to_value(vars).unwrap_or(Value::Null)
}
