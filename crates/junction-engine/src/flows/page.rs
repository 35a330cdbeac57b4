//! One page through the page processors: per import `preMap` → mapping →
//! `postMap` → submit → `postSubmit` → response mapping →
//! `postResponseMap`; per lookup the export's answer joined to each record.
//! A page is all in memory (at most a page size of records, 5 MB), and its
//! outcome is handed back to be committed with the run's checkpoint.

use std::sync::Arc;

use junction_core::flow::document::{HookRef, ImportAdapter, LookupAdapter, Processor, ProcessorKind};
use junction_core::flow::{get, record_actions, set, RecordAction};
use junction_store::NewFlowError;
use serde_json::{json, Map, Value};

use super::run::RunCtx;
use super::source;

/// A record on its way through the flow.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub data: Value,
    pub trace_key: String,
    /// Its index in the page the export produced.
    pub o_index: i64,
    /// The retry data key it is a retry of.
    pub retry_of: Option<String>,
}

/// Counts of one step for one page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Count {
    pub success: u64,
    pub error: u64,
    pub ignore: u64,
    pub pages: u64,
}

/// What a page did, committed in one transaction once it went through
/// every processor.
#[derive(Debug, Default)]
pub(crate) struct PageOutcome {
    pub counts: Vec<(String, Count)>,
    pub errors: Vec<NewFlowError>,
    pub retry_data: Vec<(String, String, Value)>,
    pub succeeded: Vec<(String, String)>,
    pub retried: Vec<String>,
    /// The flow stops: a `postResponseMap` threw, or a connection went offline.
    pub fatal: Option<String>,
    pub offline: Option<(String, String)>,
}

impl PageOutcome {
    fn count(&mut self, step: &str) -> &mut Count {
        if let Some(i) = self.counts.iter().position(|(s, _)| s == step) {
            return &mut self.counts[i].1;
        }
        self.counts.push((step.to_string(), Count::default()));
        &mut self.counts.last_mut().expect("just pushed").1
    }

    /// Records one record's errors at `step`, with the record as it
    /// entered the step as its retry data.
    pub fn fail(&mut self, ctx: &RunCtx, step: &str, rec: &Rec, errors: &[Value], source: &str) {
        let key = crate::runs::uuid();
        self.count(step).error += 1;
        let errors: Vec<Value> = match errors.is_empty() {
            true => vec![json!({"code": "error", "message": "the record failed"})],
            false => errors.to_vec(),
        };
        for e in &errors {
            self.errors.push(error_of(ctx, step, rec, e, source, Some(&key)));
        }
        self.retry_data.push((key, step.to_string(), rec.data.clone()));
        // A retried record that fails again has its new error; the old one
        // is done with.
        if let Some(old) = &rec.retry_of {
            self.retried.push(old.clone());
        }
    }

    /// Errors logged for a record that still goes on (`data` + `errors`).
    fn note(&mut self, ctx: &RunCtx, step: &str, rec: &Rec, errors: &[Value], source: &str) {
        for e in errors {
            self.errors.push(error_of(ctx, step, rec, e, source, None));
        }
    }

    fn succeed(&mut self, step: &str, rec: &Rec) {
        self.count(step).success += 1;
        self.succeeded.push((step.to_string(), rec.trace_key.clone()));
        if let Some(key) = &rec.retry_of {
            self.retried.push(key.clone());
        }
    }
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn error_of(
    ctx: &RunCtx,
    step: &str,
    rec: &Rec,
    e: &Value,
    source: &str,
    key: Option<&str>,
) -> NewFlowError {
    let (code, message) = match e {
        Value::Object(o) => (text_of(o.get("code")), text_of(o.get("message"))),
        Value::String(s) => (String::new(), s.clone()),
        other => (String::new(), other.to_string()),
    };
    let source = match e.get("source").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => source.to_string(),
    };
    NewFlowError {
        step: step.to_string(),
        source: crate::worker::clean(&ctx.mask(&source)),
        code: crate::worker::clean(&ctx.mask(if code.is_empty() { "error" } else { &code })),
        message: crate::worker::clean(&ctx.mask(&message)),
        trace_key: rec.trace_key.clone(),
        retry_data_key: key.map(str::to_string),
        o_index: rec.o_index,
    }
}

/// A whole page failed at a step (a hook threw, or answered the wrong
/// length): every record gets the error.
fn fail_all(out: &mut PageOutcome, ctx: &RunCtx, step: &str, recs: &[Rec], message: &str, code: &str) {
    let e = json!({"code": code, "message": message});
    ctx.log("ERROR", &format!("{step}: {message}"));
    for rec in recs {
        out.fail(ctx, step, rec, std::slice::from_ref(&e), "flow");
    }
}

/// Runs the page through the processors from `from` on.
pub(crate) async fn process(ctx: Arc<RunCtx>, page_index: i64, mut recs: Vec<Rec>, from: usize) -> PageOutcome {
    let mut out = PageOutcome::default();
    for i in from..ctx.flow.page_processors.len() {
        if recs.is_empty() || out.fatal.is_some() {
            break;
        }
        let p = ctx.flow.page_processors[i].clone();
        out.count(&p.name).pages += 1;
        recs = match p.kind.clone() {
            ProcessorKind::Import(adapter) => import(&ctx, &mut out, &p, &adapter, page_index, recs).await,
            ProcessorKind::Lookup(adapter) => lookup(&ctx, &mut out, &p, &adapter, recs).await,
        };
    }
    out
}

fn base_options(ctx: &RunCtx, p: &Processor, id_key: &str) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert(id_key.into(), json!(p.name));
    o.insert("_connectionId".into(), json!(p.connection));
    o.insert("_flowId".into(), json!(ctx.flow_name));
    o.insert("_integrationId".into(), json!(ctx.flow_name));
    o.insert("_parentIntegrationId".into(), Value::Null);
    o.insert("settings".into(), Value::Object(ctx.flow.settings.clone()));
    if let Some(event) = &ctx.event {
        o.insert("event".into(), event.clone());
    }
    o.insert("bearerToken".into(), json!(ctx.bearer));
    o
}

/// One import operation: a record, or one element of its `pathToMany` array.
struct Op {
    rec: usize,
    data: Value,
}

async fn import(
    ctx: &RunCtx,
    out: &mut PageOutcome,
    p: &Processor,
    adapter: &ImportAdapter,
    page_index: i64,
    recs: Vec<Rec>,
) -> Vec<Rec> {
    let step = p.name.as_str();
    // oneToMany: each element of the array at pathToMany is its own operation.
    let mut ops = Vec::new();
    let mut broken = vec![false; recs.len()];
    for (i, rec) in recs.iter().enumerate() {
        match &p.path_to_many {
            None => ops.push(Op { rec: i, data: rec.data.clone() }),
            Some(path) => match get(&rec.data, path) {
                Some(Value::Array(items)) => ops.extend(items.iter().map(|d| Op { rec: i, data: d.clone() })),
                _ => {
                    broken[i] = true;
                    let e =
                        json!({"code": "pathToMany", "message": "pathToMany does not name an array in this record"});
                    out.fail(ctx, step, rec, &[e], "flow");
                }
            },
        }
    }
    let mut state: Vec<OpState> = ops.iter().map(|_| OpState::Going).collect();

    // preMap: on the records as they come.
    if let Some(hook) = &p.hooks.pre_map {
        let mut o = base_options(ctx, p, "_importId");
        o.insert("data".into(), Value::Array(ops.iter().map(|op| op.data.clone()).collect()));
        match per_record(ctx, hook, "preMap", o, ops.len()).await {
            Err(message) => {
                fail_all(out, ctx, step, &live(&recs, &broken), &message, "preMap");
                return Vec::new();
            }
            Ok(actions) => apply_actions(ctx, out, step, &recs, &mut ops, &mut state, actions, "preMap", false),
        }
    }
    // The operations' data is not read again: moved, not copied.
    let mut pre_map: Vec<Value> = ops.iter_mut().map(|op| std::mem::take(&mut op.data)).collect();
    let mut post_map: Vec<Value> = pre_map.iter().map(|d| p.mapping.apply(d)).collect();

    if let Some(hook) = &p.hooks.post_map {
        let idx: Vec<usize> = going(&state);
        let mut o = base_options(ctx, p, "_importId");
        o.insert("preMapData".into(), Value::Array(idx.iter().map(|&i| pre_map[i].clone()).collect()));
        o.insert("postMapData".into(), Value::Array(idx.iter().map(|&i| post_map[i].clone()).collect()));
        match per_record(ctx, hook, "postMap", o, idx.len()).await {
            Err(message) => {
                fail_all(out, ctx, step, &live(&recs, &broken), &message, "postMap");
                return Vec::new();
            }
            Ok(actions) => {
                for (k, action) in idx.iter().zip(actions) {
                    match action {
                        RecordAction::Process { data, errors } => {
                            post_map[*k] = data;
                            if !errors.is_empty() {
                                out.note(ctx, step, &recs[ops[*k].rec], &errors, "postMap");
                            }
                        }
                        RecordAction::Ignore => state[*k] = OpState::Ignored,
                        RecordAction::Fail { errors } => state[*k] = OpState::Failed(errors),
                    }
                }
            }
        }
    }

    // Submit what is still going.
    let idx = going(&state);
    // Usually every operation is still going: the arrays move as they are.
    let (submit_pre, submit_post): (Vec<Value>, Vec<Value>) = match idx.len() == ops.len() {
        true => (std::mem::take(&mut pre_map), std::mem::take(&mut post_map)),
        false => {
            (idx.iter().map(|&i| pre_map[i].clone()).collect(), idx.iter().map(|&i| post_map[i].clone()).collect())
        }
    };
    let mut responses: Vec<Value> = match submit(ctx, p, adapter, &submit_pre, &submit_post).await {
        Ok(r) => r,
        Err(SubmitError::Offline(reason)) => {
            out.offline = Some((p.connection.clone().unwrap_or_default(), reason.clone()));
            out.fatal = Some(format!("{step}: the connection went offline: {reason}"));
            fail_all(
                out,
                ctx,
                step,
                &live(&recs, &broken),
                &format!("the connection went offline: {reason}"),
                "offline",
            );
            return Vec::new();
        }
        Err(SubmitError::Failed(message)) => {
            fail_all(out, ctx, step, &live(&recs, &broken), &message, "import");
            return Vec::new();
        }
    };

    if let Some(hook) = &p.hooks.post_submit {
        let mut o = base_options(ctx, p, "_importId");
        o.insert("preMapData".into(), Value::Array(submit_pre.clone()));
        o.insert("postMapData".into(), Value::Array(submit_post.clone()));
        o.insert("responseData".into(), Value::Array(responses.clone()));
        match ctx.call(hook.clone(), o).await {
            Err(message) => {
                fail_all(out, ctx, step, &live(&recs, &broken), &format!("postSubmit threw: {message}"), "postSubmit");
                return Vec::new();
            }
            Ok(Value::Array(items)) if items.len() == responses.len() => responses = items,
            Ok(other) => {
                let message = format!(
                    "postSubmit must answer the responseData array ({} elements); it answered {}",
                    responses.len(),
                    shape(&other)
                );
                fail_all(out, ctx, step, &live(&recs, &broken), &message, "postSubmit");
                return Vec::new();
            }
        }
    }
    for (k, response) in idx.iter().zip(&responses) {
        let status = response.get("statusCode").and_then(Value::as_u64).unwrap_or(0);
        let errors: Vec<Value> = match response.get("errors") {
            Some(Value::Array(e)) => e.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(other) => vec![other.clone()],
        };
        if response.get("ignored").and_then(Value::as_bool) == Some(true) {
            state[*k] = OpState::Ignored;
        } else if (200..300).contains(&status) {
            if !errors.is_empty() {
                out.note(ctx, step, &recs[ops[*k].rec], &errors, "import");
            }
            state[*k] = OpState::Done(response.clone());
        } else {
            let errors = match errors.is_empty() {
                true => vec![
                    json!({"code": status.to_string(), "message": format!("the import answered statusCode {status}")}),
                ],
                false => errors,
            };
            state[*k] = OpState::Failed(errors);
        }
    }

    // Per record: failed if any of its operations failed; ignored if all
    // were; else it succeeded.
    let mut next = Vec::new();
    let mut responded: Vec<(Rec, Value)> = Vec::new();
    for (i, rec) in recs.into_iter().enumerate() {
        if broken[i] {
            if p.proceed_on_failure {
                next.push(rec);
            }
            continue;
        }
        let mine: Vec<&OpState> = ops.iter().zip(&state).filter(|(op, _)| op.rec == i).map(|(_, s)| s).collect();
        let failed: Vec<Value> = mine
            .iter()
            .filter_map(|s| match s {
                OpState::Failed(e) => Some(e.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        if mine.iter().any(|s| matches!(s, OpState::Failed(_))) {
            out.fail(ctx, step, &rec, &failed, "import");
            if p.proceed_on_failure {
                next.push(rec);
            }
        } else if mine.iter().all(|s| matches!(s, OpState::Ignored)) {
            out.count(step).ignore += 1;
            next.push(rec);
        } else {
            out.succeed(step, &rec);
            let response = mine.iter().rev().find_map(|s| match s {
                OpState::Done(r) => Some(r.clone()),
                _ => None,
            });
            responded.push((rec, response.unwrap_or(Value::Null)));
        }
    }
    let _ = page_index;
    next.extend(respond(ctx, out, p, responded, "_importId").await);
    next
}

/// Response mapping and `postResponseMap` for the records that succeeded.
async fn respond(
    ctx: &RunCtx,
    out: &mut PageOutcome,
    p: &Processor,
    responded: Vec<(Rec, Value)>,
    id_key: &str,
) -> Vec<Rec> {
    let mut recs = Vec::with_capacity(responded.len());
    let mut responses = Vec::with_capacity(responded.len());
    for (mut rec, response) in responded {
        if let Some(m) = &p.response_mapping {
            merge(&mut rec.data, m.apply(&response));
        } else if id_key == "_exportId" {
            // A lookup without responseMapping joins its answer under its name.
            if let Some(data) = response.get("data") {
                set(&mut rec.data, &[junction_core::flow::Segment::Key(p.name.clone())], data.clone());
            }
        }
        recs.push(rec);
        responses.push(response);
    }
    let Some(hook) = &p.post_response_map else { return recs };
    if recs.is_empty() {
        return recs;
    }
    let mut o = base_options(ctx, p, id_key);
    o.insert("postResponseMapData".into(), Value::Array(recs.iter().map(|r| r.data.clone()).collect()));
    o.insert("responseData".into(), Value::Array(responses));
    o.insert("oneToMany".into(), json!(p.path_to_many.is_some()));
    o.insert("pathToMany".into(), p.path_to_many.as_ref().map(|_| json!(path_text(p))).unwrap_or(Value::Null));
    match ctx.call(hook.clone(), o).await {
        Ok(Value::Array(items)) if items.len() == recs.len() => {
            for (rec, item) in recs.iter_mut().zip(items) {
                rec.data = item;
            }
            recs
        }
        Ok(other) => {
            out.fatal = Some(format!(
                "{}: postResponseMap must answer the postResponseMapData array ({} elements); it answered {}",
                p.name,
                recs.len(),
                shape(&other)
            ));
            Vec::new()
        }
        Err(message) => {
            out.fatal = Some(format!("{}: postResponseMap threw: {message}", p.name));
            Vec::new()
        }
    }
}

fn path_text(p: &Processor) -> String {
    p.path_to_many
        .as_ref()
        .map(|path| {
            path.iter()
                .map(|s| match s {
                    junction_core::flow::Segment::Key(k) => format!(".{k}"),
                    junction_core::flow::Segment::Index(i) => format!("[{i}]"),
                })
                .collect::<String>()
                .trim_start_matches('.')
                .to_string()
        })
        .unwrap_or_default()
}

/// Joins a response mapping's result into the record (objects merge).
fn merge(target: &mut Value, mapped: Value) {
    match (target, mapped) {
        (Value::Object(t), Value::Object(m)) => {
            for (k, v) in m {
                match t.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (t, m) if !m.is_null() => *t = m,
        _ => {}
    }
}

async fn lookup(
    ctx: &RunCtx,
    out: &mut PageOutcome,
    p: &Processor,
    adapter: &LookupAdapter,
    recs: Vec<Rec>,
) -> Vec<Rec> {
    let step = p.name.as_str();
    let answers: Vec<Result<Value, Vec<Value>>> = match adapter {
        LookupAdapter::Wrapper { function, configuration } => {
            let mut o = base_options(ctx, p, "_exportId");
            o.insert("data".into(), Value::Array(recs.iter().map(|r| r.data.clone()).collect()));
            o.insert("configuration".into(), configuration.clone());
            o.insert("connection".into(), ctx.connection_options(p.connection.as_deref()));
            match ctx.call_kind(function.clone(), "wrapper", Value::Object(o)).await {
                Err(message) => {
                    fail_all(out, ctx, step, &recs, &format!("the lookup threw: {message}"), "lookup");
                    return Vec::new();
                }
                Ok(answer) => match answer.get("data") {
                    Some(Value::Array(items)) if items.len() == recs.len() => items.iter().cloned().map(Ok).collect(),
                    _ => {
                        let message = format!(
                            "a lookup must answer {{data}} with one element per record ({}); it answered {}",
                            recs.len(),
                            shape(answer.get("data").unwrap_or(&answer))
                        );
                        fail_all(out, ctx, step, &recs, &message, "lookup");
                        return Vec::new();
                    }
                },
            }
        }
        LookupAdapter::Http(export) => {
            let mut answers = Vec::with_capacity(recs.len());
            for rec in &recs {
                match source::http_lookup(ctx, p, export, &rec.data).await {
                    Ok(records) => answers.push(Ok(Value::Array(records))),
                    Err(source::SourceError::Offline(reason)) => {
                        out.offline = Some((p.connection.clone().unwrap_or_default(), reason.clone()));
                        out.fatal = Some(format!("{step}: the connection went offline: {reason}"));
                        fail_all(out, ctx, step, &recs, &format!("the connection went offline: {reason}"), "offline");
                        return Vec::new();
                    }
                    Err(source::SourceError::Failed(message)) => {
                        answers.push(Err(vec![json!({"code": "lookup", "message": message})]))
                    }
                }
            }
            answers
        }
    };
    let mut responded = Vec::new();
    let mut next = Vec::new();
    for (rec, answer) in recs.into_iter().zip(answers) {
        match answer {
            Ok(data) => {
                out.succeed(step, &rec);
                responded.push((rec, json!({"statusCode": 200, "data": data, "errors": []})));
            }
            Err(errors) => {
                out.fail(ctx, step, &rec, &errors, "lookup");
                if p.proceed_on_failure {
                    next.push(rec);
                }
            }
        }
    }
    next.extend(respond(ctx, out, p, responded, "_exportId").await);
    next
}

#[derive(Debug, Clone)]
enum OpState {
    Going,
    Ignored,
    Failed(Vec<Value>),
    Done(Value),
}

fn going(state: &[OpState]) -> Vec<usize> {
    state.iter().enumerate().filter(|(_, s)| matches!(s, OpState::Going)).map(|(i, _)| i).collect()
}

fn live(recs: &[Rec], broken: &[bool]) -> Vec<Rec> {
    recs.iter().zip(broken).filter(|(_, b)| !**b).map(|(r, _)| r.clone()).collect()
}

#[allow(clippy::too_many_arguments)]
fn apply_actions(
    ctx: &RunCtx,
    out: &mut PageOutcome,
    step: &str,
    recs: &[Rec],
    ops: &mut [Op],
    state: &mut [OpState],
    actions: Vec<RecordAction>,
    hook: &str,
    _post: bool,
) {
    for (k, action) in actions.into_iter().enumerate() {
        match action {
            RecordAction::Process { data, errors } => {
                ops[k].data = data;
                if !errors.is_empty() {
                    out.note(ctx, step, &recs[ops[k].rec], &errors, hook);
                }
            }
            RecordAction::Ignore => state[k] = OpState::Ignored,
            RecordAction::Fail { errors } => state[k] = OpState::Failed(errors),
        }
    }
}

/// Calls a per-record hook and reads its answer (lengths must match).
async fn per_record(
    ctx: &RunCtx,
    hook: &HookRef,
    name: &str,
    options: Map<String, Value>,
    len: usize,
) -> Result<Vec<RecordAction>, String> {
    let answer = ctx.call(hook.clone(), options).await.map_err(|m| format!("{name} threw: {m}"))?;
    record_actions(name, len, &answer)
}

pub(crate) fn shape(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Object(_) => "an object".into(),
        Value::Null => "nothing".into(),
        other => format!("{other}"),
    }
}

pub(crate) enum SubmitError {
    Offline(String),
    Failed(String),
}

/// Submits the mapped records; one response per record.
async fn submit(
    ctx: &RunCtx,
    p: &Processor,
    adapter: &ImportAdapter,
    pre_map: &[Value],
    post_map: &[Value],
) -> Result<Vec<Value>, SubmitError> {
    if post_map.is_empty() {
        return Ok(Vec::new());
    }
    match adapter {
        ImportAdapter::Wrapper { function, configuration } => {
            let mut o = base_options(ctx, p, "_importId");
            o.insert("preMapData".into(), Value::Array(pre_map.to_vec()));
            o.insert("postMapData".into(), Value::Array(post_map.to_vec()));
            o.insert("configuration".into(), configuration.clone());
            o.insert("connection".into(), ctx.connection_options(p.connection.as_deref()));
            match ctx.call_kind(function.clone(), "wrapper", Value::Object(o)).await {
                Err(message) => Err(SubmitError::Failed(format!("the import threw: {message}"))),
                Ok(Value::Array(items)) if items.len() == post_map.len() => Ok(items
                    .into_iter()
                    .map(|i| {
                        let mut r = json!({"statusCode": i.get("statusCode").cloned().unwrap_or(json!(200)),
                            "errors": i.get("errors").cloned().unwrap_or(json!([])),
                            "ignored": i.get("ignored").cloned().unwrap_or(json!(false)),
                            "id": i.get("id").cloned().unwrap_or(Value::Null),
                            "_json": i.clone()});
                        if let Some(uri) = i.get("dataURI") {
                            r["dataURI"] = uri.clone();
                        }
                        r
                    })
                    .collect()),
                Ok(other) => Err(SubmitError::Failed(format!(
                    "a wrapper import must answer one {{statusCode, id, ignored, errors}} per record ({}); it answered {}",
                    post_map.len(),
                    shape(&other)
                ))),
            }
        }
        ImportAdapter::Http(import) => source::http_import(ctx, p, import, post_map).await,
        ImportAdapter::Database(import) => source::database_import(ctx, p, import, post_map).await,
    }
}
