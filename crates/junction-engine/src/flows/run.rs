//! A flow run, executed by a worker as its run's one task. Each export is
//! read page by page (its state chained from page to page); `preSavePage`
//! runs on each page in order (so `abort` stops the next page), then up to
//! `parallel_pages` pages go through the processors at once, and their
//! outcomes are committed in page order, each with the export's state
//! after it. A worker that dies resumes, on the next claim, after the last
//! committed page: a page is imported at least once, never skipped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use junction_core::flow::document::{Export, ExportType, Flow, HookRef, MAX_PAGE_BYTES};
use junction_runtime::Redactor;
use junction_store::{Finish, FinishItem, FlowProgress, LogLine, PageCommit, RunRecord, TaskRecord};
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, watch};

use super::page::{self, error_of, PageOutcome, Rec};
use super::source::{Exporter, SourceError};
use super::{empty_counters, flow_of_run, retry_of};
use crate::worker::WorkerConfig;
use crate::{Engine, Result};

/// A hook answering 503 (the stack is busy) is asked again for this long.
const BUSY_PATIENCE: Duration = Duration::from_secs(120);

/// What every page of a run shares.
pub(crate) struct RunCtx {
    pub engine: Engine,
    pub flow: Flow,
    pub flow_name: String,
    pub run_id: String,
    pub task_id: String,
    redactor: Redactor,
    /// `lastExportDateTime` / `currentExportDateTime` of the export being read.
    pub times: std::sync::Mutex<(Option<String>, String)>,
    pub page: std::sync::atomic::AtomicI64,
    /// The event that triggered the run, given to hooks as `options.event`.
    pub event: Option<Value>,
    /// `options.bearerToken`: reads this flow and this run while it goes.
    pub bearer: String,
}

impl RunCtx {
    pub fn mask(&self, text: &str) -> String {
        self.redactor.apply(text)
    }

    pub fn log(&self, level: &str, text: &str) {
        let page = self.page.load(std::sync::atomic::Ordering::Relaxed);
        let line = format!("page {page}: {}", self.mask(text));
        self.engine.logs.line(LogLine {
            run_id: self.run_id.clone(),
            task_id: self.task_id.clone(),
            ts: Timestamp::now(),
            level: level.to_string(),
            line: junction_runtime::log_line(level, &line),
        });
    }

    /// A connection as wrapper functions receive it:
    /// `{encrypted, unencrypted}`.
    pub fn connection_options(&self, name: Option<&str>) -> Value {
        match name.and_then(|n| self.flow.connections.get(n)) {
            Some(c) => c.context(),
            None => Value::Null,
        }
    }

    /// Templates' variables: settings, the export's times.
    pub fn vars(&self) -> Value {
        let times = self.times.lock().unwrap_or_else(|e| e.into_inner()).clone();
        json!({
            "settings": self.flow.settings,
            "lastExportDateTime": times.0,
            "currentExportDateTime": times.1,
        })
    }

    /// Calls a stack function as a hook; `Err` with the function's error.
    pub async fn call(&self, hook: HookRef, mut options: Map<String, Value>) -> std::result::Result<Value, String> {
        options.insert("bearerToken".into(), json!(self.bearer));
        if let Some(event) = &self.event {
            options.insert("event".into(), event.clone());
        }
        self.call_kind(hook, "hook", Value::Object(options)).await
    }

    pub async fn call_kind(
        &self,
        hook: HookRef,
        kind: &'static str,
        options: Value,
    ) -> std::result::Result<Value, String> {
        let started = tokio::time::Instant::now();
        loop {
            let answer = super::source::boxed(self.engine.call_stack_function(
                &hook.stack,
                Some(kind),
                &hook.function,
                options.clone(),
            ))
            .await
            .map_err(|e| self.mask(&format!("stack {:?}: {e}", hook.stack)))?;
            match answer.status {
                200 => {
                    return match answer.body.as_deref() {
                        None | Some("") => Ok(Value::Null),
                        Some(body) => serde_json::from_str(body)
                            .map_err(|e| format!("{} answered something that is not JSON: {e}", hook.function)),
                    };
                }
                503 if started.elapsed() < BUSY_PATIENCE => {
                    tokio::time::sleep(Duration::from_secs(u64::from(answer.retry_after.unwrap_or(1)))).await;
                }
                _ => {
                    let body: Value =
                        answer.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
                    let message = body["errors"][0]["message"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{} answered {}", hook.function, answer.status));
                    return Err(self.mask(&message));
                }
            }
        }
    }
}

/// Counters per step, as the run shows them.
fn add_counts(counters: &mut Value, outcome: &PageOutcome, flow: &Flow) {
    for (step, count) in &outcome.counts {
        let entry = &mut counters[step.as_str()];
        let is_export = flow.page_generators.iter().any(|e| &e.name == step);
        let pages_key = if is_export { "pagesGenerated" } else { "pagesProcessed" };
        for (key, n) in
            [("success", count.success), ("error", count.error), ("ignore", count.ignore), (pages_key, count.pages)]
        {
            let now = entry.get(key).and_then(Value::as_u64).unwrap_or(0);
            entry[key] = json!(now + n);
        }
    }
}

/// Errors an export reported for its page (no record, no retry data).
fn record_export_errors(ctx: &RunCtx, step: &str, page_index: i64, outcome: &mut PageOutcome, errors: &[Value]) {
    let empty = Rec { data: Value::Null, trace_key: format!("{page_index}"), o_index: -1, retry_of: None };
    for e in errors {
        outcome.errors.push(error_of(ctx, step, &empty, e, "export", None));
    }
    if !errors.is_empty() {
        outcome.counts.push((step.to_string(), page::Count { error: errors.len() as u64, ..Default::default() }));
    }
}

/// The bytes `records` take as JSON, counted without building the text.
fn json_size(records: &[Value]) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, records);
    count.0
}

/// How the run ended.
enum End {
    Done,
    Failed(String),
    Stopped,
}

/// The text of a wrapper export's `delta.lastExecutionTime` and templates'
/// `{{lastExportDateTime}}`.
fn iso(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

fn trace_key(record: &Value, page: i64, index: usize) -> String {
    for key in ["id", "_id"] {
        match record.get(key) {
            Some(Value::String(s)) if !s.is_empty() => return s.clone(),
            Some(Value::Number(n)) => return n.to_string(),
            _ => {}
        }
    }
    format!("{page}-{index}")
}

impl Engine {
    pub(crate) async fn run_flow_task(&self, config: &WorkerConfig, task: TaskRecord, run: RunRecord) -> Result<()> {
        let name = flow_of_run(&run).unwrap_or_default().to_string();
        let (flow, secrets) = match self.load_flow(&name, run.app_revision).await {
            Ok(loaded) => loaded,
            Err(e) => {
                return self
                    .end_flow_task(config, &task, &run, End::Failed(format!("the flow cannot run: {e}")), None)
                    .await
            }
        };
        let bearer = self.flow_run_token(&run.id);
        let mut secrets = secrets;
        secrets.push(bearer.clone());
        let ctx = Arc::new(RunCtx {
            engine: self.clone(),
            redactor: Redactor::with_paths(&secrets, &[]),
            bearer,
            flow_name: name.clone(),
            run_id: run.id.clone(),
            task_id: task.id.clone(),
            times: std::sync::Mutex::new((None, String::new())),
            page: 0.into(),
            event: run.context.clone(),
            flow,
        });

        // Stop on revoke (in-process signal) or a lost lease.
        let stop_rx = self.signals.register(&task.id);
        let (stopped_tx, stopped) = watch::channel(false);
        let (lost_tx, lost_rx) = oneshot::channel::<()>();
        let heartbeat = {
            let (store, id, worker, lease) = (self.store.clone(), task.id.clone(), config.id.clone(), config.lease);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match store.heartbeat(&id, &worker, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = lost_tx.send(());
                            return;
                        }
                        Err(e) => tracing::warn!(task = %id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        let watcher = tokio::spawn(async move {
            tokio::select! {
                Ok(_) = stop_rx => {}
                Ok(_) = lost_rx => {}
                else => std::future::pending::<()>().await,
            }
            let _ = stopped_tx.send(true);
        });

        let progress = self.store.flow_progress(&run.id).await?;
        if task.attempts > 1 {
            ctx.log("INFO", &format!("attempt {}: resuming after the last committed page", task.attempts));
        }
        let mut counters = progress.as_ref().map(|p| p.counters.clone()).unwrap_or_else(|| empty_counters(&ctx.flow));
        let retry = retry_of(&run.params);
        let end = if retry.is_empty() {
            self.run_exports(&ctx, &run, progress, &mut counters, stopped.clone()).await
        } else {
            self.run_retry(&ctx, &run, progress, &mut counters, retry, stopped.clone()).await
        };
        self.signals.unregister(&task.id);
        watcher.abort();
        let end = match end {
            Ok(end) => end,
            Err(e) => End::Failed(ctx.mask(&format!("the engine could not run the flow: {e}"))),
        };
        if let End::Done = end {
            // The delta time moves only on a successful, non-test run.
            let advance: Vec<(String, i64)> = ctx
                .flow
                .page_generators
                .iter()
                .filter(|e| !matches!(e.export_type, ExportType::Test { .. }))
                .filter(|_| run.params.get("retry").is_none() && run.params.get("webhook").is_none())
                .filter_map(|e| run.started_at.or(Some(run.created_at)).map(|t| (e.name.clone(), t.as_millisecond())))
                .collect();
            self.store.set_flow_last_exports(&name, &advance).await?;
        }
        let finished = self.end_flow_task(config, &task, &run, end, Some(counters)).await;
        heartbeat.abort();
        finished
    }

    async fn end_flow_task(
        &self,
        config: &WorkerConfig,
        task: &TaskRecord,
        run: &RunRecord,
        end: End,
        counters: Option<Value>,
    ) -> Result<()> {
        let errors: u64 = counters
            .as_ref()
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(|c| c["error"].as_u64()).sum())
            .unwrap_or(0);
        let log = |level: &str, text: &str| {
            self.logs.line(LogLine {
                run_id: run.id.clone(),
                task_id: task.id.clone(),
                ts: Timestamp::now(),
                level: level.to_string(),
                line: junction_runtime::log_line(level, text),
            })
        };
        let finish = match end {
            End::Stopped => {
                self.logs.flush().await;
                return Ok(());
            }
            End::Done => {
                let outcome = if errors > 0 { "completed_with_errors" } else { "completed" };
                log("INFO", &format!("flow {outcome}: {errors} record errors"));
                Finish::Success {
                    output: Some(json!({"outcome": outcome, "counters": counters})),
                    sealed_output: None,
                    result: Some(outcome.to_string()),
                    children: Vec::new(),
                }
            }
            End::Failed(reason) => {
                log("ERROR", &format!("flow failed: {reason}"));
                Finish::Failure { result: Some(crate::worker::clean(&reason)), traceback: None, skip: Vec::new() }
            }
        };
        self.logs.flush().await;
        let item = FinishItem { task_id: task.id.clone(), worker: config.id.clone(), finish };
        if self.completions.finish(item).await?.is_some() {
            let _ = self.signals.run_ended.send(run.id.clone());
        }
        Ok(())
    }

    async fn run_exports(
        &self,
        ctx: &Arc<RunCtx>,
        run: &RunRecord,
        progress: Option<FlowProgress>,
        counters: &mut Value,
        stopped: watch::Receiver<bool>,
    ) -> Result<End> {
        let name = &ctx.flow_name;
        let last = self.store.flow_last_exports(name).await?;
        let offline = self.store.flow_offline_connections(name).await?;
        let current_ms = run.started_at.unwrap_or(run.created_at).as_millisecond();
        let start = progress.clone().unwrap_or_default();
        // A webhook run reads only the page its post brought.
        let posted = super::webhook::webhook_of(&run.params);
        for (g, export) in ctx.flow.page_generators.iter().enumerate().skip(start.generator.max(0) as usize) {
            let page = match &posted {
                Some((name, records)) if *name == export.name => Some(records.clone()),
                Some(_) => continue,
                None => None,
            };
            if let Some(c) = &export.connection {
                if let Some((_, _, reason)) = offline.iter().find(|(n, _, _)| n == c) {
                    return Ok(End::Failed(format!("connection {c:?} is offline: {reason}")));
                }
            }
            let last_ms = last.iter().find(|(e, _)| e == &export.name).map(|(_, t)| *t);
            let lag = match export.export_type {
                ExportType::Delta { lag_offset_ms, .. } => lag_offset_ms,
                _ => 0,
            };
            *ctx.times.lock().unwrap_or_else(|e| e.into_inner()) = (last_ms.map(|t| iso(t - lag)), iso(current_ms));
            let resume = (g as i64 == start.generator).then(|| (start.state.clone(), start.next_page));
            let (state, first_page) = resume.unwrap_or((None, 0));
            let mut exporter = Exporter::open(ctx, export, last_ms.map(|t| t - lag), state, page);
            match self.read_export(ctx, g, export, &mut exporter, first_page, counters, stopped.clone()).await? {
                End::Done => {}
                other => return Ok(other),
            }
            let next = FlowProgress { generator: g as i64 + 1, state: None, next_page: 0, counters: counters.clone() };
            self.store
                .commit_flow_page(&PageCommit {
                    run_id: run.id.clone(),
                    flow: name.clone(),
                    progress: next,
                    ..Default::default()
                })
                .await?;
        }
        Ok(End::Done)
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_export(
        &self,
        ctx: &Arc<RunCtx>,
        g: usize,
        export: &Export,
        exporter: &mut Exporter,
        first_page: i64,
        counters: &mut Value,
        stopped: watch::Receiver<bool>,
    ) -> Result<End> {
        let mut in_flight: VecDeque<(i64, Option<Value>, tokio::task::JoinHandle<PageOutcome>)> = VecDeque::new();
        let mut page_index = first_page;
        let mut done = false;
        let mut failure: Option<String> = None;
        let limit = match export.export_type {
            ExportType::Test { limit } => Some(limit),
            _ => None,
        };
        let mut delivered = 0usize;
        loop {
            if *stopped.borrow() {
                for (_, _, h) in in_flight {
                    h.abort();
                }
                return Ok(End::Stopped);
            }
            while !done && failure.is_none() && in_flight.len() < ctx.flow.parallel_pages {
                let page = match exporter.next_page(ctx).await {
                    Ok(Some(page)) => page,
                    Ok(None) => {
                        done = true;
                        break;
                    }
                    Err(SourceError::Offline(reason)) => {
                        if let Some(c) = &export.connection {
                            self.store.set_flow_connection_offline(&ctx.flow_name, c, Some(&ctx.mask(&reason))).await?;
                        }
                        failure = Some(format!("{}: the connection went offline: {reason}", export.name));
                        break;
                    }
                    Err(SourceError::Failed(message)) => {
                        failure = Some(format!("{}: {message}", export.name));
                        break;
                    }
                };
                ctx.page.store(page_index, std::sync::atomic::Ordering::Relaxed);
                let mut outcome = PageOutcome::default();
                let mut records = page.records;
                if let Some(limit) = limit {
                    records.truncate(limit.saturating_sub(delivered));
                    if delivered + records.len() >= limit {
                        done = true;
                    }
                }
                delivered += records.len();
                let size = json_size(&records);
                if size > MAX_PAGE_BYTES {
                    failure = Some(format!(
                        "{}: page {page_index} holds {size} bytes of records; a page is at most {MAX_PAGE_BYTES}",
                        export.name
                    ));
                    break;
                }
                let recs: Vec<Rec> = records
                    .into_iter()
                    .enumerate()
                    .map(|(i, data)| Rec {
                        trace_key: trace_key(&data, page_index, i),
                        o_index: i as i64,
                        data,
                        retry_of: None,
                    })
                    .collect();
                let export_errors: Vec<Value> = page.errors;
                let (recs, abort) =
                    match self.pre_save_page(ctx, export, page_index, recs, export_errors, &mut outcome).await {
                        Ok(r) => r,
                        Err(message) => {
                            failure = Some(message);
                            break;
                        }
                    };
                if abort || page.last {
                    done = true;
                }
                if abort {
                    ctx.log("INFO", &format!("{}: preSavePage asked to abort: no further pages", export.name));
                }
                ctx.log("INFO", &format!("{}: page of {} records", export.name, recs.len()));
                let task_ctx = ctx.clone();
                let index = page_index;
                let handle = tokio::spawn(async move {
                    let mut processed = page::process(task_ctx, index, recs, 0).await;
                    // The export's own counts go first.
                    outcome.counts.append(&mut processed.counts);
                    processed.counts = std::mem::take(&mut outcome.counts);
                    processed.errors.splice(0..0, outcome.errors);
                    processed.retry_data.splice(0..0, outcome.retry_data);
                    processed
                });
                in_flight.push_back((page_index, page.state, handle));
                page_index += 1;
            }
            let Some((index, state, handle)) = in_flight.pop_front() else {
                return Ok(match failure {
                    Some(f) => End::Failed(f),
                    None => End::Done,
                });
            };
            let mut stopped_wait = stopped.clone();
            let outcome = tokio::select! {
                r = handle => match r {
                    Ok(o) => o,
                    Err(e) => return Ok(End::Failed(format!("page {index} could not be processed: {e}"))),
                },
                _ = stopped_wait.wait_for(|s| *s) => {
                    for (_, _, h) in in_flight {
                        h.abort();
                    }
                    return Ok(End::Stopped);
                }
            };
            add_counts(counters, &outcome, &ctx.flow);
            let progress =
                FlowProgress { generator: g as i64, state, next_page: index + 1, counters: counters.clone() };
            if let Some((connection, reason)) = &outcome.offline {
                self.store.set_flow_connection_offline(&ctx.flow_name, connection, Some(&ctx.mask(reason))).await?;
            }
            self.commit(ctx, progress, outcome.errors, outcome.retry_data, outcome.succeeded, outcome.retried).await?;
            if let Some(fatal) = outcome.fatal {
                for (_, _, h) in in_flight {
                    h.abort();
                }
                return Ok(End::Failed(fatal));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        ctx: &RunCtx,
        progress: FlowProgress,
        errors: Vec<junction_store::NewFlowError>,
        retry_data: Vec<(String, String, Value)>,
        succeeded: Vec<(String, String)>,
        retried: Vec<String>,
    ) -> Result<()> {
        let page = PageCommit {
            run_id: ctx.run_id.clone(),
            flow: ctx.flow_name.clone(),
            progress,
            errors,
            retry_data,
            succeeded,
            retried,
        };
        Ok(self.store.commit_flow_page(&page).await?)
    }

    /// `preSavePage` on a page: its answer's `data` goes on, its `errors`
    /// are the export's, `newErrorsAndRetryData` become errors with retry
    /// data, and `abort` ends the export after this page.
    async fn pre_save_page(
        &self,
        ctx: &RunCtx,
        export: &Export,
        page_index: i64,
        recs: Vec<Rec>,
        errors: Vec<Value>,
        outcome: &mut PageOutcome,
    ) -> std::result::Result<(Vec<Rec>, bool), String> {
        let step = export.name.as_str();
        let Some(hook) = &export.pre_save_page else {
            record_export_errors(ctx, step, page_index, outcome, &errors);
            outcome
                .counts
                .push((step.to_string(), page::Count { pages: 1, success: recs.len() as u64, ..Default::default() }));
            return Ok((recs, false));
        };
        let mut o = Map::new();
        o.insert("data".into(), Value::Array(recs.iter().map(|r| r.data.clone()).collect()));
        o.insert("errors".into(), Value::Array(errors));
        o.insert("retryData".into(), json!({}));
        o.insert("_exportId".into(), json!(export.name));
        o.insert("_connectionId".into(), json!(export.connection));
        o.insert("_flowId".into(), json!(ctx.flow_name));
        o.insert("_integrationId".into(), json!(ctx.flow_name));
        o.insert("_parentIntegrationId".into(), Value::Null);
        o.insert("pageIndex".into(), json!(page_index));
        if let ExportType::Delta { .. } = export.export_type {
            let times = ctx.times.lock().unwrap_or_else(|e| e.into_inner()).clone();
            o.insert("lastExportDateTime".into(), json!(times.0));
            o.insert("currentExportDateTime".into(), json!(times.1));
        }
        o.insert("settings".into(), Value::Object(ctx.flow.settings.clone()));
        let answer = ctx.call(hook.clone(), o).await.map_err(|m| format!("{step}: preSavePage threw: {m}"))?;
        let Some(answer) = answer.as_object() else {
            return Err(format!(
                "{step}: preSavePage must answer {{data, errors, abort}}; it answered {}",
                page::shape(&answer)
            ));
        };
        let data = match answer.get("data") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => {
                return Err(format!("{step}: preSavePage's data must be an array; it is {}", page::shape(other)))
            }
        };
        let answer_errors = match answer.get("errors") {
            Some(Value::Array(e)) => e.clone(),
            _ => Vec::new(),
        };
        record_export_errors(ctx, step, page_index, outcome, &answer_errors);
        if let Some(Value::Array(items)) = answer.get("newErrorsAndRetryData") {
            for (i, item) in items.iter().enumerate() {
                let rec = Rec {
                    data: item.get("retryData").cloned().unwrap_or(Value::Null),
                    trace_key: item
                        .get("traceKey")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{page_index}-new-{i}")),
                    o_index: i as i64,
                    retry_of: None,
                };
                let errors = item.get("errors").and_then(Value::as_array).cloned().unwrap_or_default();
                outcome.fail(ctx, step, &rec, &errors, "preSavePage");
            }
        }
        let abort = answer.get("abort").and_then(Value::as_bool).unwrap_or(false);
        let recs: Vec<Rec> = data
            .into_iter()
            .enumerate()
            .map(|(i, data)| Rec {
                trace_key: trace_key(&data, page_index, i),
                o_index: i as i64,
                data,
                retry_of: None,
            })
            .collect();
        outcome
            .counts
            .push((step.to_string(), page::Count { pages: 1, success: recs.len() as u64, ..Default::default() }));
        Ok((recs, abort))
    }

    /// A retry run: each stored record re-enters the step that failed it.
    async fn run_retry(
        &self,
        ctx: &Arc<RunCtx>,
        run: &RunRecord,
        progress: Option<FlowProgress>,
        counters: &mut Value,
        retry: Vec<(String, String, Value)>,
        stopped: watch::Receiver<bool>,
    ) -> Result<End> {
        let _ = run;
        let flow = &ctx.flow;
        let skip = progress.map(|p| p.next_page).unwrap_or(0).max(0) as usize;
        let exports = flow.page_generators.len();
        // Pages of records that start at the same step, in order.
        let mut groups: Vec<(usize, Vec<Rec>)> = Vec::new();
        for (i, (key, step, data)) in retry.into_iter().enumerate() {
            let at = flow.step_names().iter().position(|s| *s == step).map(|i| i.saturating_sub(exports));
            let Some(at) = at else {
                ctx.log("WARN", &format!("retry data {key}: the flow has no step {step:?} any more; skipped"));
                continue;
            };
            let rec = Rec { trace_key: trace_key(&data, 0, i), o_index: i as i64, data, retry_of: Some(key) };
            match groups.last_mut() {
                Some((s, recs)) if *s == at && recs.len() < junction_core::flow::document::DEFAULT_PAGE_SIZE => {
                    recs.push(rec)
                }
                _ => groups.push((at, vec![rec])),
            }
        }
        for (index, (from, recs)) in groups.into_iter().enumerate().skip(skip) {
            if *stopped.borrow() {
                return Ok(End::Stopped);
            }
            ctx.page.store(index as i64, std::sync::atomic::Ordering::Relaxed);
            ctx.log("INFO", &format!("retrying {} records", recs.len()));
            let outcome = page::process(ctx.clone(), index as i64, recs, from).await;
            add_counts(counters, &outcome, flow);
            let progress =
                FlowProgress { generator: 0, state: None, next_page: index as i64 + 1, counters: counters.clone() };
            self.commit(ctx, progress, outcome.errors, outcome.retry_data, outcome.succeeded, outcome.retried).await?;
            if let Some(fatal) = outcome.fatal {
                return Ok(End::Failed(fatal));
            }
        }
        Ok(End::Done)
    }
}
