//! Workers (DESIGN.md, "The path of a run", steps 2-5): claim a task with
//! a lease, keep it by heartbeat, run the step in its runtime with the
//! run's variables, stream the log into the store in batches, and finish
//! the task in one transaction (dependants released, retry scheduled, or
//! the run ended). A reaper puts back tasks whose worker died.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use junction_core::application::Application;
use junction_core::configuration::GLOBAL;
use junction_core::run::{retry_delay, State};
use junction_core::secret::SecretString;
use junction_core::step::{Language, StepVersion};
use junction_core::substitute::{substitute, Scope};
use junction_runtime::{log_line, Event, Execution, Limits, Script, Status};
use junction_store::{Finish, FinishItem, LogLine, TaskRecord};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{Engine, EngineError, Result};

/// Most application revisions (and step versions) a worker keeps parsed.
pub(crate) const CACHE_ENTRIES: usize = 256;

/// Lost attempts (worker died) tolerated beyond a step's retries.
const MAX_LOST_ATTEMPTS: i64 = 3;

/// How long a stopping worker waits for its running tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub id: String,
    /// Queues served; `default` unless named otherwise.
    pub queues: Vec<String>,
    /// Tasks run at once.
    pub concurrency: usize,
    /// A claim is kept this long without a heartbeat.
    pub lease: Duration,
    /// How often to look for work when nothing signals it.
    pub poll: Duration,
}

impl WorkerConfig {
    pub fn new(concurrency: usize) -> WorkerConfig {
        WorkerConfig {
            id: format!("{}-{}", hostname(), crate::runs::uuid()),
            queues: vec!["default".into()],
            concurrency: concurrency.max(1),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "worker".into())
}

impl Engine {
    /// Runs a worker until `shutdown` resolves; then lets running tasks
    /// finish (their leases would otherwise hand them to another worker).
    pub async fn run_worker(&self, config: WorkerConfig, shutdown: impl std::future::Future<Output = ()>) {
        let config = Arc::new(config);
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let reaper = tokio::spawn(reap(self.clone(), config.lease));
        // Other processes' enqueues (PostgreSQL LISTEN); SQLite polls.
        let mut wakeups = match self.store.work_wakeups().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for work; polling instead");
                None
            }
        };
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = &mut shutdown => break,
            };
            // Registered before the claim, so an enqueue between the claim
            // and the wait is not missed.
            let notified = self.signals.work_available.notified();
            // A broken sandbox claims nothing: queued tasks wait for it (or
            // for a worker whose sandbox works) instead of failing.
            let claimed = match self.runtime.health().ok {
                true => self.store.claim_task(&config.id, &config.queues, config.lease).await,
                false => Ok(None),
            };
            match claimed {
                Ok(Some(task)) => {
                    let (engine, config) = (self.clone(), config.clone());
                    tokio::spawn(async move {
                        let failed = task.clone();
                        if let Err(e) = engine.run_task(&config, task).await {
                            tracing::error!(task = %failed.id, error = %e, "task execution failed inside the engine");
                            engine.fail_inside(&config, &failed, &e.to_string()).await;
                        }
                        drop(permit);
                    });
                    // More may be waiting.
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "claiming work failed"),
            }
            drop(permit);
            tokio::select! {
                _ = notified => {}
                _ = next_wakeup(&mut wakeups) => {}
                _ = tokio::time::sleep(config.poll) => {}
                _ = &mut shutdown => break,
            }
        }
        reaper.abort();
        // Running tasks get a while to finish; past that, their leases hand
        // them to another worker (or to this one after a restart).
        let drained = slots.acquire_many(config.concurrency as u32);
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            tracing::warn!("stopping with tasks still running; they will run again when their leases expire");
        }
    }

    async fn run_task(&self, config: &WorkerConfig, task: TaskRecord) -> Result<()> {
        let run = self
            .store
            .get_run(&task.run_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("run {}", task.run_id)))?;
        if crate::flows::flow_of_run(&run).is_some() {
            return self.run_flow_task(config, task, run).await;
        }
        let app = self.cached_revision(&run.application, run.app_revision).await?;
        let log = |level: &str, text: &str| self.log_line(&run.id, &task.id, level, text);
        let Some(step) = app.steps().iter().find(|s| s.name == task.step_name) else {
            log("ERROR", &format!("step {:?} is not in application revision {}", task.step_name, run.app_revision));
            return self.finish(config, &task, &app, &run.id, Err("unknown step".into())).await;
        };
        // Attempts beyond the retries are lost ones (a worker died); a step
        // that keeps killing its worker is failed rather than retried for ever.
        if task.attempts > i64::from(step.retry.max) + 1 + MAX_LOST_ATTEMPTS {
            let msg = format!("{} attempts were lost; the step is failed", task.attempts - 1);
            log("ERROR", &msg);
            return self.finish(config, &task, &app, &run.id, Err(msg.as_str().into())).await;
        }
        let stored = match task.step_version {
            Some(v) => self.cached_step(&task.step_file, v).await?,
            None => None,
        };
        let Some(stored) = stored else {
            log("ERROR", &format!("step {:?} (version {:?}) is not stored", task.step_file, task.step_version));
            return self.finish(config, &task, &app, &run.id, Err("step not stored".into())).await;
        };

        // Variables, configuration and global parameters, secrets unsealed
        // here and only handed to the runtime.
        let mut secrets = Vec::new();
        let mut app_vars = run.params.as_object().cloned().unwrap_or_default();
        for (name, value) in self.store.application_secrets(&run.application).await? {
            secrets.push(value.expose().to_string());
            app_vars.insert(name, Value::String(value.expose().to_string()));
        }
        for (name, value) in self.store.run_secret_params(&run.id).await? {
            secrets.push(value.expose().to_string());
            app_vars.insert(name, Value::String(value.expose().to_string()));
        }
        let config_values = match &run.configuration {
            Some(c) => self.configuration_values(c, &mut secrets).await?,
            None => Map::new(),
        };

        let input = match stored.language {
            Language::Python => {
                let outputs = self.outputs(&run.id).await?;
                let previous: Vec<Value> = app
                    .inputs_of(&step.name)
                    .into_iter()
                    .map(|name| {
                        // The input step's own parameters serve
                        // get_parameter_from_previous_step.
                        let parameters = app.steps().iter().find(|s| s.name == name).map(|s| s.parameters.clone());
                        json!({"name": name, "data": outputs.get(name).cloned().unwrap_or(Value::Null), "parameters": parameters})
                    })
                    .collect();
                let mut parameters = step.parameters.clone();
                parameters.insert("output_to".into(), json!(step.output_to));
                json!({
                    "step_name": step.name,
                    "app_name": run.application,
                    "parameters": parameters,
                    "app_variables": app_vars,
                    "config": config_values,
                    "previous": previous,
                    "log_level": run.log_level,
                })
            }
            Language::Javascript => {
                let globals = self.configuration_values(GLOBAL, &mut secrets).await?;
                // The step's own parameters, `${...}` resolved here (the
                // Python SDK does it itself).
                // Previous data is read only when a parameter may need it.
                let needs_data = step.parameters.values().any(|v| v.to_string().contains("${"));
                let previous: Vec<Value> = if needs_data {
                    let outputs = self.outputs(&run.id).await?;
                    app.inputs_of(&step.name).into_iter().filter_map(|n| outputs.get(n).cloned()).collect()
                } else {
                    Vec::new()
                };
                let scope = Scope { config: &config_values, app_vars: &app_vars, previous: &previous };
                let mut resolved = Map::new();
                for (name, value) in &step.parameters {
                    match substitute(value, scope) {
                        Ok(v) => {
                            resolved.insert(name.clone(), v);
                        }
                        Err(e) => {
                            log("ERROR", &format!("parameter {name:?}: {e}"));
                            let failure = Failure { error: format!("parameter {name:?}: {e}"), traceback: None };
                            return self.finish(config, &task, &app, &run.id, Err(failure)).await;
                        }
                    }
                }
                let mut arguments = app_vars;
                arguments.extend(resolved);
                // Spec 000: the start times of the job's previous run and
                // previous successful run, as JavaScript's toISOString().
                let (last, last_ok) = self.store.previous_run_starts(&run).await?;
                let iso = |t: Option<Timestamp>| t.map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
                json!({"args": {
                    "arguments": arguments,
                    "globalArguments": globals,
                    "plutoraValues": run.context.clone().unwrap_or_else(|| json!({})),
                    "lastRunDateUtc": iso(last),
                    "lastSuccessfulRunDateUtc": iso(last_ok),
                }})
            }
        };
        let mut execution =
            Execution::new(Script::new(stored.name.clone(), stored.language, stored.data.clone()), input);
        execution.secrets = secrets;
        // A warm process serves one application: nothing one application's
        // script keeps (module state, a timer) reaches another's run.
        execution.tenant = format!("app:{}", run.application);
        execution.limits = Limits::default();
        if task.attempts > 1 {
            log("INFO", &format!("attempt {} of step {:?}", task.attempts, step.name));
        }

        // Stop on revoke (in-process signal) or when the lease is lost
        // (revoked elsewhere, or this worker was too slow to heartbeat).
        let stop_rx = self.signals.register(&task.id);
        let (lost_tx, lost_rx) = oneshot::channel::<String>();
        let heartbeat = {
            let (store, id, worker, lease) = (self.store.clone(), task.id.clone(), config.id.clone(), config.lease);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match store.heartbeat(&id, &worker, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = lost_tx.send("the task was revoked or its lease was lost".into());
                            return;
                        }
                        Err(e) => tracing::warn!(task = %id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        let stop = async {
            // A dropped sender is no signal: wait for a real one.
            tokio::select! {
                Ok(_) = stop_rx => {}
                Ok(_) = lost_rx => {}
                else => std::future::pending::<()>().await,
            }
        };
        let (run_id, task_id) = (run.id.clone(), task.id.clone());
        let logs2 = self.logs.clone();
        let mut on_event = move |event: Event| {
            let (level, line) = match event {
                Event::Log { level, line } => (level, line),
                Event::Progress { message } => ("PROGRESS".to_string(), log_line("PROGRESS", &message)),
            };
            logs2.line(LogLine { run_id: run_id.clone(), task_id: task_id.clone(), ts: Timestamp::now(), level, line });
        };
        let outcome = self.runtime.execute(&execution, &mut on_event, stop).await;
        self.signals.unregister(&task.id);
        let result = match outcome {
            Ok(o) if o.status == Status::Succeeded => Ok((saved(o.data, &execution.secrets), o.message)),
            Ok(o) if o.status == Status::Stopped => {
                // The revoke already wrote the task's state.
                heartbeat.abort();
                self.logs.flush().await;
                return Ok(());
            }
            Ok(o) => {
                Err(Failure { error: o.error.unwrap_or_else(|| format!("{:?}", o.status)), traceback: o.traceback })
            }
            Err(e) => {
                log("ERROR", &format!("the runtime failed: {e}"));
                Err(Failure { error: e.to_string(), traceback: None })
            }
        };
        // The lease is kept until the completion is recorded, so a slow
        // batch cannot hand a finished task to another worker.
        let finished = self.finish(config, &task, &app, &run.id, result).await;
        heartbeat.abort();
        finished
    }

    /// A task whose execution failed inside the engine (a store error, an
    /// unreadable revision) is failed for good, so it is not put back and
    /// retried for ever when its lease expires.
    async fn fail_inside(&self, config: &WorkerConfig, task: &TaskRecord, error: &str) {
        let skip = match self.store.get_run(&task.run_id).await {
            Ok(Some(run)) => match self.cached_revision(&run.application, run.app_revision).await {
                Ok(app) => app.descendants_of(&task.step_name).into_iter().map(str::to_string).collect(),
                Err(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        self.log_line(&task.run_id, &task.id, "ERROR", &format!("the engine could not run this step: {error}"));
        self.logs.flush().await;
        let finish = Finish::Failure { result: Some(clean(error)), traceback: None, skip };
        let item = FinishItem { task_id: task.id.clone(), worker: config.id.clone(), finish };
        match self.completions.finish(item).await {
            Ok(Some(_)) => {
                let _ = self.signals.run_ended.send(task.run_id.clone());
            }
            Ok(None) => {}
            Err(e) => tracing::error!(task = %task.id, error = %e, "could not record the failure"),
        }
    }

    async fn finish(
        &self,
        config: &WorkerConfig,
        task: &TaskRecord,
        app: &Application,
        run_id: &str,
        result: std::result::Result<(Saved, String), Failure>,
    ) -> Result<()> {
        let step = app.steps().iter().find(|s| s.name == task.step_name);
        let finish = match result {
            Ok((saved, message)) => Finish::Success {
                output: saved.shown,
                sealed_output: saved.full,
                result: Some(clean(&message)),
                children: step.map(|s| s.output_to.clone()).unwrap_or_default(),
            },
            Err(failure) => {
                let retry = step.map(|s| s.retry).unwrap_or_default();
                let retries_done = (task.attempts - 1).max(0) as u32;
                if retries_done < retry.max {
                    let jitter = if retry.jitter { rand_fraction() } else { 0.0 };
                    let delay = retry_delay(&retry, retries_done + 1, jitter);
                    let due = Timestamp::now()
                        .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX))
                        .unwrap_or(Timestamp::MAX);
                    self.log_line(
                        run_id,
                        &task.id,
                        "WARN",
                        &format!(
                            "attempt {} failed: {}; retry {} of {} in {} s",
                            task.attempts,
                            failure.error,
                            retries_done + 1,
                            retry.max,
                            delay.as_secs()
                        ),
                    );
                    Finish::Retry {
                        due_at: due,
                        result: Some(clean(&failure.error)),
                        traceback: failure.traceback.as_deref().map(clean),
                    }
                } else {
                    let skip = app.descendants_of(&task.step_name).into_iter().map(str::to_string).collect();
                    Finish::Failure {
                        result: Some(clean(&failure.error)),
                        traceback: failure.traceback.as_deref().map(clean),
                        skip,
                    }
                }
            }
        };
        // The log is in the store before the state says the task ended.
        self.logs.flush().await;
        let wakes = matches!(finish, Finish::Success { .. } | Finish::Retry { .. });
        let item = FinishItem { task_id: task.id.clone(), worker: config.id.clone(), finish };
        let ended = self.completions.finish(item).await?;
        if wakes {
            self.signals.work_available.notify_waiters();
        }
        if ended.is_some() {
            let _ = self.signals.run_ended.send(run_id.to_string());
        }
        Ok(())
    }

    /// Application revisions and step versions never change once stored,
    /// so each worker process reads and parses each one once.
    async fn cached_revision(&self, name: &str, revision: i64) -> Result<Arc<Application>> {
        let fetch =
            async { Ok::<_, EngineError>(self.store.get_application_revision(name, revision).await?.map(Arc::new)) };
        self.apps
            .get_or_fetch((name.to_string(), revision), fetch)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("application {name} revision {revision}")))
    }

    async fn cached_step(&self, name: &str, version: i64) -> Result<Option<Arc<StepVersion>>> {
        let fetch = async { Ok::<_, EngineError>(self.store.get_step_version(name, version).await?.map(Arc::new)) };
        self.steps.get_or_fetch((name.to_string(), version), fetch).await
    }

    fn log_line(&self, run_id: &str, task_id: &str, level: &str, text: &str) {
        self.logs.line(LogLine {
            run_id: run_id.to_string(),
            task_id: task_id.to_string(),
            ts: Timestamp::now(),
            level: level.to_string(),
            line: log_line(level, text),
        });
    }

    /// Saved data of a run's finished steps, by step name, in full (also
    /// what was stored masked because it held a secret).
    async fn outputs(&self, run_id: &str) -> Result<BTreeMap<String, Value>> {
        Ok(self.store.run_outputs(run_id).await?)
    }

    /// A configuration's values with encrypted ones unsealed (and noted as
    /// secrets to mask).
    async fn configuration_values(&self, name: &str, secrets: &mut Vec<String>) -> Result<Map<String, Value>> {
        let mut values = Map::new();
        if let Some(record) = self.store.get_configuration(name).await? {
            for e in record.configuration.entries() {
                if let Some(v) = &e.value {
                    values.insert(e.name.clone(), v.clone());
                }
            }
        }
        for (name, value) in self.store.configuration_secrets(name).await? {
            secrets.push(value.expose().to_string());
            values.insert(name, Value::String(value.expose().to_string()));
        }
        Ok(values)
    }
}

/// What a step saved, as stored: the copy shown, and the full data when
/// that copy had to be masked.
struct Saved {
    shown: Option<Value>,
    full: Option<SecretString>,
}

/// Saved data holding one of the execution's secret values is shown with
/// them masked; the full data is sealed for the next steps.
fn saved(data: Option<Value>, secrets: &[String]) -> Saved {
    let masked = match &data {
        Some(d) if !secrets.is_empty() => junction_runtime::DataRedactor::new(secrets).redact(d),
        _ => None,
    };
    match masked {
        Some(shown) => Saved { full: data.map(|d| SecretString::new(d.to_string())), shown: Some(shown) },
        None => Saved { shown: data, full: None },
    }
}

#[derive(Debug)]
struct Failure {
    error: String,
    traceback: Option<String>,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Failure { error, traceback: None }
    }
}

impl From<&str> for Failure {
    fn from(error: &str) -> Self {
        Failure { error: error.to_string(), traceback: None }
    }
}

async fn next_wakeup(wakeups: &mut Option<mpsc::Receiver<()>>) {
    match wakeups {
        Some(rx) => {
            if rx.recv().await.is_none() {
                *wakeups = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Text for the store: PostgreSQL refuses NUL in text, and a script may
/// print one.
pub(crate) fn clean(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

fn rand_fraction() -> f64 {
    use rand::Rng;
    rand::thread_rng().gen::<f64>()
}

/// Puts back tasks whose lease expired, noting the lost attempt in their
/// log.
async fn reap(engine: Engine, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 2).await;
        match engine.store.requeue_expired().await {
            Ok(lost) => {
                for (run_id, task_id, attempts) in &lost {
                    engine.log_line(
                        run_id,
                        task_id,
                        "WARN",
                        &format!("attempt {attempts} was lost (its worker stopped answering); the step will run again"),
                    );
                }
                if !lost.is_empty() {
                    engine.signals.work_available.notify_waiters();
                }
            }
            Err(e) => tracing::warn!(error = %e, "requeueing expired tasks failed"),
        }
    }
}

/// Group commit for log lines: every line goes through one channel; a
/// single writer stores whatever has accumulated in one transaction.
#[derive(Clone, Debug)]
pub(crate) struct LogWriter {
    tx: mpsc::UnboundedSender<LogCommand>,
}

#[derive(Debug)]
enum LogCommand {
    Line(LogLine),
    Flush(oneshot::Sender<()>),
}

impl LogWriter {
    pub fn start(store: junction_store::Store) -> LogWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<LogCommand>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut acks = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(cmd) = next.take() {
                    match cmd {
                        LogCommand::Line(l) => batch.push(l),
                        LogCommand::Flush(ack) => acks.push(ack),
                    }
                    if batch.len() < 5_000 {
                        next = rx.try_recv().ok();
                    }
                }
                if let Err(e) = store.append_logs(&batch).await {
                    tracing::error!(error = %e, lines = batch.len(), "storing log lines failed");
                }
                batch.clear();
                for ack in acks.drain(..) {
                    let _ = ack.send(());
                }
            }
        });
        LogWriter { tx }
    }

    pub fn line(&self, mut line: LogLine) {
        if line.line.contains('\0') {
            line.line = clean(&line.line);
        }
        let _ = self.tx.send(LogCommand::Line(line));
    }

    /// Waits until every line sent before is stored.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(LogCommand::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

/// Group commit for completions: tasks that finish together are recorded
/// in one transaction, each caller getting its own answer. A finish is
/// idempotent (ownership is re-checked), so a failed batch may always be
/// retried item by item.
#[derive(Clone, Debug)]
pub(crate) struct CompletionWriter(crate::batch::Batcher<FinishItem, Option<State>>);

impl CompletionWriter {
    pub fn start(store: junction_store::Store) -> CompletionWriter {
        CompletionWriter(crate::batch::Batcher::start(
            256,
            crate::batch::Split::Always,
            move |items: Arc<Vec<FinishItem>>| {
                let store = store.clone();
                async move { store.finish_tasks(&items).await }
            },
        ))
    }

    pub async fn finish(&self, item: FinishItem) -> Result<Option<State>> {
        self.0.submit(item).await.map_err(|e| EngineError::Unavailable(format!("recording a completion failed: {e}")))
    }
}
