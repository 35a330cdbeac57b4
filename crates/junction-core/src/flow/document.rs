//! The flow document (spec 001 as integrator.io shapes it): `name`,
//! `settings`, `connections`, `pageGenerators` (exports) and
//! `pageProcessors` (imports, and exports used as lookups), each with its
//! hooks as stack functions `{"stack": NAME, "function": FN}`.
//!
//! Checked here: the shape, every name, which hook may stand where, page
//! sizes and export types, the mapping, and that each connection named
//! exists and suits its adapter. The adapters' own settings are checked by
//! [`super::adapters`]; that a stack exports a function is checked by the
//! engine, which knows the stacks.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::adapters::{self, Connection};
use super::mapping::{parse_path, Mapping, Segment};
use crate::name::check_name;
use crate::validation::{Invalid, Violations};

/// Records in a page when the document does not say (integrator.io's default).
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest page a document may ask for.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// A page's records never take more than this as JSON (integrator.io's 5 MB).
pub const MAX_PAGE_BYTES: usize = 5 * 1024 * 1024;
/// Pages of one export in flight at once unless the document says.
pub const DEFAULT_PARALLEL_PAGES: usize = 4;
pub const MAX_PARALLEL_PAGES: usize = 32;
/// A wrapper export answering the same thing this many times in a row is
/// in a loop (spec 001: "more than 5 times").
pub const MAX_IDENTICAL_RESPONSES: usize = 5;

/// A hook or wrapper: a function of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRef {
    pub stack: String,
    pub function: String,
}

/// Which records an export delivers (integrator.io's export `type`).
#[derive(Debug, Clone, PartialEq)]
pub enum ExportType {
    All,
    /// Records changed since the last successful run.
    Delta {
        date_field: Option<String>,
        lag_offset_ms: i64,
    },
    /// Records whose `boolean_field` is not yet set.
    Once {
        boolean_field: String,
    },
    /// At most `limit` records (1-100); never advances the delta time.
    Test {
        limit: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExportAdapter {
    /// A stack function called until it answers `lastPage: true`.
    Wrapper {
        function: HookRef,
        configuration: Value,
    },
    Http(adapters::HttpExport),
    Database(adapters::DatabaseExport),
    /// Records POSTed to the flow's own URL, each request one page.
    Webhook(WebhookExport),
}

/// How a webhook export checks who is posting.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookVerify {
    /// The header (default `Authorization`, as `Bearer TOKEN` or the bare
    /// token) carries `encrypted.token`.
    Token { header: String },
    /// The header carries the HMAC of the raw body with `encrypted.key`,
    /// hex or base64, after an optional prefix (`sha256=`).
    Hmac { header: String, algorithm: HmacAlgorithm, base64: bool, prefix: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha256,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookExport {
    pub verify: WebhookVerify,
    /// `encrypted.token` or `encrypted.key`, sealed with the flow.
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub name: String,
    pub adapter: ExportAdapter,
    pub connection: Option<String>,
    pub page_size: usize,
    pub export_type: ExportType,
    pub pre_save_page: Option<HookRef>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImportAdapter {
    /// A stack function answering one `{statusCode, id, ignored, errors}` per record.
    Wrapper {
        function: HookRef,
        configuration: Value,
    },
    Http(adapters::HttpImport),
    Database(adapters::DatabaseImport),
}

/// A page processor's work: submit the records, or look something up for
/// each and join the answer to it.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorKind {
    Import(ImportAdapter),
    Lookup(LookupAdapter),
}

#[derive(Debug, Clone, PartialEq)]
pub enum LookupAdapter {
    /// The wrapper export function, given the page as `options.data`, answers
    /// `{data: [...]}` with one element per record.
    Wrapper { function: HookRef, configuration: Value },
    /// One request per record (`record` in the templates).
    Http(adapters::HttpExport),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportHooks {
    pub pre_map: Option<HookRef>,
    pub post_map: Option<HookRef>,
    pub post_submit: Option<HookRef>,
    pub post_aggregate: Option<HookRef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Processor {
    pub name: String,
    pub kind: ProcessorKind,
    pub connection: Option<String>,
    pub mapping: Mapping,
    pub hooks: ImportHooks,
    pub response_mapping: Option<Mapping>,
    pub post_response_map: Option<HookRef>,
    /// `oneToMany` with `pathToMany`: each element of that array is its own
    /// import operation.
    pub path_to_many: Option<Vec<Segment>>,
    /// A record that failed here still goes on to the next processors.
    pub proceed_on_failure: bool,
}

/// A checked flow document.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub name: String,
    pub settings: Map<String, Value>,
    pub connections: BTreeMap<String, Connection>,
    pub page_generators: Vec<Export>,
    pub page_processors: Vec<Processor>,
    /// Pages in flight at once (1 for `"ordered": true`).
    pub parallel_pages: usize,
    /// When the flow runs by itself: a schedule entry as
    /// `POST /api/v1/schedule` takes it, without `application_id`.
    pub schedule: Option<crate::schedule::ScheduleEntry>,
}

impl Flow {
    /// Every hook and wrapper the flow calls, with the JSON path that names it.
    pub fn functions(&self) -> Vec<(String, &HookRef)> {
        let mut out = Vec::new();
        for (i, e) in self.page_generators.iter().enumerate() {
            if let ExportAdapter::Wrapper { function, .. } = &e.adapter {
                out.push((format!("pageGenerators[{i}].function"), function));
            }
            if let Some(h) = &e.pre_save_page {
                out.push((format!("pageGenerators[{i}].hooks.preSavePage"), h));
            }
        }
        for (i, p) in self.page_processors.iter().enumerate() {
            match &p.kind {
                ProcessorKind::Import(ImportAdapter::Wrapper { function, .. })
                | ProcessorKind::Lookup(LookupAdapter::Wrapper { function, .. }) => {
                    out.push((format!("pageProcessors[{i}].function"), function))
                }
                _ => {}
            }
            let hooks = [
                ("preMap", &p.hooks.pre_map),
                ("postMap", &p.hooks.post_map),
                ("postSubmit", &p.hooks.post_submit),
                ("postAggregate", &p.hooks.post_aggregate),
            ];
            for (name, hook) in hooks {
                if let Some(h) = hook {
                    out.push((format!("pageProcessors[{i}].hooks.{name}"), h));
                }
            }
            if let Some(h) = &p.post_response_map {
                out.push((format!("pageProcessors[{i}].postResponseMap"), h));
            }
        }
        out
    }

    /// The step names in the flow's order: exports, then processors.
    pub fn step_names(&self) -> Vec<&str> {
        let exports = self.page_generators.iter().map(|e| e.name.as_str());
        exports.chain(self.page_processors.iter().map(|p| p.name.as_str())).collect()
    }

    /// Every secret value of the flow's connections and webhooks, for masking.
    pub fn secrets(&self) -> Vec<String> {
        let webhooks = self.page_generators.iter().filter_map(|e| match &e.adapter {
            ExportAdapter::Webhook(w) => Some(w.secret.clone()),
            _ => None,
        });
        self.connections.values().flat_map(|c| c.secrets()).chain(webhooks).collect()
    }

    /// The webhook export named `name`.
    pub fn webhook(&self, name: &str) -> Option<(&Export, &WebhookExport)> {
        self.page_generators.iter().find(|e| e.name == name).and_then(|e| match &e.adapter {
            ExportAdapter::Webhook(w) => Some((e, w)),
            _ => None,
        })
    }
}

const FLOW_KEYS: &[&str] = &[
    "name",
    "description",
    "settings",
    "connections",
    "pageGenerators",
    "pageProcessors",
    "ordered",
    "maxParallelPages",
    "schedule",
];
/// Keys of an export this module reads; the rest belong to its adapter.
pub const EXPORT_KEYS: &[&str] = &[
    "name",
    "type",
    "connection",
    "pageSize",
    "exportType",
    "delta",
    "once",
    "test",
    "hooks",
    "stack",
    "function",
    "configuration",
    "verify",
    "encrypted",
];
/// Keys of a page processor this module reads; the rest belong to its adapter.
pub const PROCESSOR_KEYS: &[&str] = &[
    "name",
    "type",
    "lookup",
    "connection",
    "mapping",
    "responseMapping",
    "hooks",
    "postResponseMap",
    "oneToMany",
    "pathToMany",
    "proceedOnFailure",
    "stack",
    "function",
    "configuration",
];

/// Checks a flow document; every problem names its JSON path and rule.
pub fn parse_flow(value: &Value) -> Result<Flow, Invalid> {
    let mut v = Violations::default();
    let Some(doc) = value.as_object() else {
        return Err(Invalid::one("body", "type", "a flow document is a JSON object"));
    };
    for key in doc.keys().filter(|k| !FLOW_KEYS.contains(&k.as_str())) {
        v.push(key.clone(), "unknown_field", format!("a flow has {}", FLOW_KEYS.join(", ")));
    }
    let name = match doc.get("name") {
        Some(Value::String(n)) => {
            if let Err(e) = check_name("name", n) {
                v.add(e);
            }
            n.clone()
        }
        Some(_) => {
            v.push("name", "type", "must be a string");
            String::new()
        }
        None => {
            v.push("name", "required", "a flow needs a name");
            String::new()
        }
    };
    let settings = match doc.get("settings") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            v.push("settings", "type", "must be an object (every hook receives it as options.settings)");
            Map::new()
        }
    };
    let mut connections = BTreeMap::new();
    match doc.get("connections") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (cname, c) in m {
                let at = format!("connections.{cname}");
                if let Err(e) = check_name(&at, cname) {
                    v.add(e);
                }
                match adapters::parse_connection(&at, c) {
                    Ok(c) => {
                        connections.insert(cname.clone(), c);
                    }
                    Err(e) => v.extend(e),
                }
            }
        }
        Some(_) => v.push("connections", "type", "must be an object of connections by name"),
    }
    let ordered = match doc.get("ordered") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            v.push("ordered", "type", "must be a boolean");
            false
        }
    };
    let mut parallel_pages = int_field("maxParallelPages", doc.get("maxParallelPages"), 1, MAX_PARALLEL_PAGES, &mut v)
        .unwrap_or(DEFAULT_PARALLEL_PAGES);
    if ordered {
        if doc.get("maxParallelPages").is_some_and(|m| m.as_u64() != Some(1)) {
            v.push("maxParallelPages", "conflict", "an ordered flow processes one page at a time");
        }
        parallel_pages = 1;
    }

    let mut page_generators = Vec::new();
    match doc.get("pageGenerators") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if let Some(e) = parse_export(&format!("pageGenerators[{i}]"), item, &connections, &mut v) {
                    page_generators.push(e);
                }
            }
        }
        Some(Value::Array(_)) | None => v.push("pageGenerators", "required", "a flow needs at least one export"),
        Some(_) => v.push("pageGenerators", "type", "must be a list of exports"),
    }
    let mut page_processors = Vec::new();
    match doc.get("pageProcessors") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(p) = parse_processor(&format!("pageProcessors[{i}]"), item, &connections, &mut v) {
                    page_processors.push(p);
                }
            }
        }
        Some(_) => v.push("pageProcessors", "type", "must be a list of imports and lookups"),
    }
    let mut seen = std::collections::BTreeSet::new();
    let steps = page_generators.iter().enumerate().map(|(i, e)| (format!("pageGenerators[{i}].name"), &e.name));
    let steps =
        steps.chain(page_processors.iter().enumerate().map(|(i, p)| (format!("pageProcessors[{i}].name"), &p.name)));
    for (at, step) in steps {
        if !seen.insert(step.clone()) {
            v.push(at, "duplicate", format!("another step is already named {step:?}"));
        }
    }
    let schedule = match doc.get("schedule") {
        None | Some(Value::Null) => None,
        Some(Value::Object(entry)) => {
            let mut body = entry.clone();
            for key in ["id", "application_id", "params"] {
                if body.remove(key).is_some() {
                    v.push(format!("schedule.{key}"), "unknown_field", "a flow's schedule runs the flow itself");
                }
            }
            body.insert("application_id".into(), Value::String("flow".into()));
            match crate::schedule::ScheduleEntry::parse(&Value::Object(body)) {
                Ok(entry) => Some(entry),
                Err(e) => {
                    for mut violation in e.0 {
                        violation.field = match violation.field.as_str() {
                            "" => "schedule".to_string(),
                            f => format!("schedule.{f}"),
                        };
                        v.add(violation);
                    }
                    None
                }
            }
        }
        Some(_) => {
            v.push(
                "schedule",
                "type",
                "a schedule entry: {\"schedule\": {\"schedule_type\": ..., \"schedule_info\": ...}}",
            );
            None
        }
    };
    v.finish(Flow { name, settings, connections, page_generators, page_processors, parallel_pages, schedule })
}

fn parse_export(
    at: &str,
    item: &Value,
    connections: &BTreeMap<String, Connection>,
    v: &mut Violations,
) -> Option<Export> {
    let Some(e) = item.as_object() else {
        v.push(at, "type", "an export is an object");
        return None;
    };
    let name = step_name(at, e, v);
    let connection = connection_field(at, e, connections, v);
    let page_size =
        int_field(&format!("{at}.pageSize"), e.get("pageSize"), 1, MAX_PAGE_SIZE, v).unwrap_or(DEFAULT_PAGE_SIZE);
    let export_type = export_type(at, e, v);
    let mut pre_save_page = None;
    match e.get("hooks") {
        None | Some(Value::Null) => {}
        Some(Value::Object(hooks)) => {
            for (hook, h) in hooks {
                let here = format!("{at}.hooks.{hook}");
                match hook.as_str() {
                    "preSavePage" => pre_save_page = hook_ref(&here, h, v),
                    "preMap" | "postMap" | "postSubmit" | "postAggregate" | "postResponseMap" => {
                        v.push(here, "wrong_stage", format!("{hook} is an import's hook; an export has preSavePage"))
                    }
                    _ => v.push(here, "unknown_hook", "an export has the hook preSavePage"),
                }
            }
        }
        Some(_) => v.push(format!("{at}.hooks"), "type", "must be an object of hooks by name"),
    }
    let adapter = match e.get("type").and_then(Value::as_str) {
        Some("wrapper") => {
            let function = wrapper_function(at, e, v);
            if let Some(c) = &connection {
                if !matches!(connections.get(c), Some(Connection::Wrapper(_)) | None) {
                    v.push(
                        format!("{at}.connection"),
                        "connection_type",
                        "a wrapper export needs a wrapper connection",
                    );
                }
            }
            function.map(|function| ExportAdapter::Wrapper { function, configuration: configuration(e) })
        }
        Some("http") => {
            only_stack_less(at, e, v);
            need_connection(at, &connection, connections, "http", v);
            collect(adapters::parse_http_export(at, e, EXPORT_KEYS), v).map(ExportAdapter::Http)
        }
        Some("database") => {
            only_stack_less(at, e, v);
            need_connection(at, &connection, connections, "database", v);
            collect(adapters::parse_database_export(at, e, EXPORT_KEYS), v).map(ExportAdapter::Database)
        }
        Some("webhook") => {
            only_stack_less(at, e, v);
            webhook_export(at, e, v).map(ExportAdapter::Webhook)
        }
        Some(other) => {
            v.push(
                format!("{at}.type"),
                "one_of",
                format!("{other:?} is not an export type: wrapper, http, database or webhook"),
            );
            None
        }
        None => {
            v.push(format!("{at}.type"), "required", "an export's type is wrapper, http, database or webhook");
            None
        }
    };
    let webhook = matches!(adapter, Some(ExportAdapter::Webhook(_)));
    for key in ["verify", "encrypted"] {
        if e.contains_key(key) && !webhook && adapter.is_some() {
            v.push(format!("{at}.{key}"), "conflict", "only a webhook export has verify and encrypted");
        }
    }
    Some(Export { name: name?, adapter: adapter?, connection, page_size, export_type, pre_save_page })
}

fn webhook_export(at: &str, e: &Map<String, Value>, v: &mut Violations) -> Option<WebhookExport> {
    for key in e.keys().filter(|k| !EXPORT_KEYS.contains(&k.as_str())) {
        v.push(format!("{at}.{key}"), "unknown_field", "a webhook export has verify and encrypted");
    }
    if e.contains_key("connection") {
        v.push(format!("{at}.connection"), "conflict", "a webhook export has its own secret in encrypted");
    }
    let Some(verify) = e.get("verify").and_then(Value::as_object) else {
        v.push(format!("{at}.verify"), "required", "a webhook export says how posts are checked: {\"type\": \"token\"} or {\"type\": \"hmac\", \"header\": ...}");
        return None;
    };
    let text = |key: &str, default: &str, v: &mut Violations| match verify.get(key) {
        None | Some(Value::Null) => Some(default.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            v.push(format!("{at}.verify.{key}"), "type", "must be a string");
            None
        }
    };
    let kind = verify.get("type").and_then(Value::as_str);
    let allowed: &[&str] = match kind {
        Some("hmac") => &["type", "header", "algorithm", "encoding", "prefix"],
        _ => &["type", "header"],
    };
    for key in verify.keys().filter(|k| !allowed.contains(&k.as_str())) {
        v.push(format!("{at}.verify.{key}"), "unknown_field", format!("verify has {}", allowed.join(", ")));
    }
    let (secret_key, verify) = match kind {
        Some("token") => ("token", text("header", "Authorization", v).map(|header| WebhookVerify::Token { header })),
        Some("hmac") => {
            let header = match verify.get("header").and_then(Value::as_str) {
                Some(h) if !h.is_empty() => Some(h.to_string()),
                _ => {
                    v.push(format!("{at}.verify.header"), "required", "the header that carries the signature");
                    None
                }
            };
            let algorithm = match verify.get("algorithm").and_then(Value::as_str).unwrap_or("sha256") {
                "sha256" => Some(HmacAlgorithm::Sha256),
                _ => {
                    v.push(format!("{at}.verify.algorithm"), "one_of", "sha256 (HMAC-SHA256)");
                    None
                }
            };
            let base64 = match verify.get("encoding").and_then(Value::as_str).unwrap_or("hex") {
                "hex" => Some(false),
                "base64" => Some(true),
                _ => {
                    v.push(format!("{at}.verify.encoding"), "one_of", "hex or base64");
                    None
                }
            };
            let prefix = text("prefix", "", v);
            let verify = match (header, algorithm, base64, prefix) {
                (Some(header), Some(algorithm), Some(base64), Some(prefix)) => {
                    Some(WebhookVerify::Hmac { header, algorithm, base64, prefix })
                }
                _ => None,
            };
            ("key", verify)
        }
        _ => {
            v.push(format!("{at}.verify.type"), "one_of", "token or hmac");
            return None;
        }
    };
    let secret = match e.get("encrypted").and_then(|x| x.get(secret_key)) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => {
            v.push(
                format!("{at}.encrypted.{secret_key}"),
                "required",
                format!("the webhook's {secret_key} (sealed, never shown again)"),
            );
            None
        }
    };
    if let Some(Value::Object(extra)) = e.get("encrypted") {
        for key in extra.keys().filter(|k| k.as_str() != secret_key) {
            v.push(format!("{at}.encrypted.{key}"), "unknown_field", format!("a webhook keeps only its {secret_key}"));
        }
    }
    Some(WebhookExport { verify: verify?, secret: secret? })
}

fn parse_processor(
    at: &str,
    item: &Value,
    connections: &BTreeMap<String, Connection>,
    v: &mut Violations,
) -> Option<Processor> {
    let Some(p) = item.as_object() else {
        v.push(at, "type", "a page processor is an object");
        return None;
    };
    let name = step_name(at, p, v);
    let connection = connection_field(at, p, connections, v);
    let lookup = match p.get("lookup") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            v.push(format!("{at}.lookup"), "type", "must be a boolean");
            false
        }
    };
    let mapping = match p.get("mapping") {
        None | Some(Value::Null) => Mapping::default(),
        Some(m) => collect(Mapping::parse(&format!("{at}.mapping"), m), v).unwrap_or_default(),
    };
    let response_mapping = match p.get("responseMapping") {
        None | Some(Value::Null) => None,
        Some(m) => collect(Mapping::parse(&format!("{at}.responseMapping"), m), v),
    };
    let mut hooks = ImportHooks::default();
    match p.get("hooks") {
        None | Some(Value::Null) => {}
        Some(Value::Object(found)) => {
            for (hook, h) in found {
                let here = format!("{at}.hooks.{hook}");
                let slot = match hook.as_str() {
                    "preMap" => &mut hooks.pre_map,
                    "postMap" => &mut hooks.post_map,
                    "postSubmit" => &mut hooks.post_submit,
                    "postAggregate" => &mut hooks.post_aggregate,
                    "preSavePage" => {
                        v.push(here, "wrong_stage", "preSavePage is an export's hook; an import has preMap, postMap, postSubmit and postAggregate");
                        continue;
                    }
                    "postResponseMap" => {
                        v.push(
                            here,
                            "wrong_stage",
                            "postResponseMap belongs on the page processor itself, beside hooks",
                        );
                        continue;
                    }
                    _ => {
                        v.push(
                            here,
                            "unknown_hook",
                            "an import has the hooks preMap, postMap, postSubmit and postAggregate",
                        );
                        continue;
                    }
                };
                *slot = hook_ref(&here, h, v);
            }
            if lookup && found.keys().any(|k| k != "preSavePage" && k != "postResponseMap") {
                v.push(format!("{at}.hooks"), "wrong_stage", "a lookup has no import hooks; use postResponseMap");
            }
        }
        Some(_) => v.push(format!("{at}.hooks"), "type", "must be an object of hooks by name"),
    }
    let post_response_map = match p.get("postResponseMap") {
        None | Some(Value::Null) => None,
        Some(h) => hook_ref(&format!("{at}.postResponseMap"), h, v),
    };
    let one_to_many = matches!(p.get("oneToMany"), Some(Value::Bool(true)));
    if p.get("oneToMany").is_some_and(|o| !o.is_boolean() && !o.is_null()) {
        v.push(format!("{at}.oneToMany"), "type", "must be a boolean");
    }
    let path_to_many = match (one_to_many, p.get("pathToMany")) {
        (true, Some(Value::String(s))) => match parse_path(s) {
            Some(path) => Some(path),
            None => {
                v.push(format!("{at}.pathToMany"), "path", "must be a path such as lines or order.items");
                None
            }
        },
        (true, _) => {
            v.push(
                format!("{at}.pathToMany"),
                "required",
                "oneToMany needs pathToMany, the array to import one by one",
            );
            None
        }
        (false, Some(_)) => {
            v.push(format!("{at}.pathToMany"), "conflict", "pathToMany needs oneToMany: true");
            None
        }
        (false, None) => None,
    };
    let proceed_on_failure = matches!(p.get("proceedOnFailure"), Some(Value::Bool(true)));
    let kind = match (p.get("type").and_then(Value::as_str), lookup) {
        (Some("wrapper"), false) => wrapper_function(at, p, v).map(|function| {
            ProcessorKind::Import(ImportAdapter::Wrapper { function, configuration: configuration(p) })
        }),
        (Some("wrapper"), true) => wrapper_function(at, p, v).map(|function| {
            ProcessorKind::Lookup(LookupAdapter::Wrapper { function, configuration: configuration(p) })
        }),
        (Some("http"), false) => {
            only_stack_less(at, p, v);
            need_connection(at, &connection, connections, "http", v);
            collect(adapters::parse_http_import(at, p, PROCESSOR_KEYS), v)
                .map(|i| ProcessorKind::Import(ImportAdapter::Http(i)))
        }
        (Some("http"), true) => {
            only_stack_less(at, p, v);
            need_connection(at, &connection, connections, "http", v);
            collect(adapters::parse_http_export(at, p, PROCESSOR_KEYS), v)
                .map(|e| ProcessorKind::Lookup(LookupAdapter::Http(e)))
        }
        (Some("database"), false) => {
            only_stack_less(at, p, v);
            need_connection(at, &connection, connections, "database", v);
            collect(adapters::parse_database_import(at, p, PROCESSOR_KEYS), v)
                .map(|i| ProcessorKind::Import(ImportAdapter::Database(i)))
        }
        (Some("database"), true) => {
            v.push(format!("{at}.type"), "one_of", "a lookup is a wrapper or http export");
            None
        }
        (Some(other), _) => {
            v.push(
                format!("{at}.type"),
                "one_of",
                format!("{other:?} is not an import type: wrapper, http or database"),
            );
            None
        }
        (None, _) => {
            v.push(format!("{at}.type"), "required", "a page processor's type is wrapper, http or database");
            None
        }
    };
    if let ProcessorKind::Lookup(_) = kind.as_ref()? {
        if !matches!(mapping, Mapping { ref fields, ref lists } if fields.is_empty() && lists.is_empty()) {
            v.push(format!("{at}.mapping"), "wrong_stage", "a lookup joins its answer with responseMapping");
        }
    }
    Some(Processor {
        name: name?,
        kind: kind?,
        connection,
        mapping,
        hooks,
        response_mapping,
        post_response_map,
        path_to_many,
        proceed_on_failure,
    })
}

fn collect<T>(result: Result<T, Invalid>, v: &mut Violations) -> Option<T> {
    match result {
        Ok(t) => Some(t),
        Err(e) => {
            v.extend(e);
            None
        }
    }
}

fn step_name(at: &str, o: &Map<String, Value>, v: &mut Violations) -> Option<String> {
    match o.get("name") {
        Some(Value::String(n)) => match check_name(&format!("{at}.name"), n) {
            Ok(()) => Some(n.clone()),
            Err(e) => {
                v.add(e);
                None
            }
        },
        Some(_) => {
            v.push(format!("{at}.name"), "type", "must be a string");
            None
        }
        None => {
            v.push(format!("{at}.name"), "required", "every step of a flow has a name (errors and counters use it)");
            None
        }
    }
}

fn connection_field(
    at: &str,
    o: &Map<String, Value>,
    connections: &BTreeMap<String, Connection>,
    v: &mut Violations,
) -> Option<String> {
    match o.get("connection") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => {
            if !connections.contains_key(c) {
                v.push(format!("{at}.connection"), "unknown_connection", format!("no connection {c:?} in connections"));
            }
            Some(c.clone())
        }
        Some(_) => {
            v.push(format!("{at}.connection"), "type", "must be the name of a connection");
            None
        }
    }
}

fn need_connection(
    at: &str,
    connection: &Option<String>,
    connections: &BTreeMap<String, Connection>,
    kind: &str,
    v: &mut Violations,
) {
    let Some(name) = connection else {
        v.push(format!("{at}.connection"), "required", format!("a {kind} step needs a {kind} connection"));
        return;
    };
    let fits = match connections.get(name) {
        None => return,
        Some(Connection::Http(_)) => kind == "http",
        Some(Connection::Database(_)) => kind == "database",
        Some(Connection::Wrapper(_)) => false,
    };
    if !fits {
        v.push(
            format!("{at}.connection"),
            "connection_type",
            format!("connection {name:?} is not a {kind} connection"),
        );
    }
}

fn only_stack_less(at: &str, o: &Map<String, Value>, v: &mut Violations) {
    for key in ["stack", "function", "configuration"] {
        if o.contains_key(key) {
            v.push(format!("{at}.{key}"), "conflict", "only a wrapper calls a stack function");
        }
    }
}

fn wrapper_function(at: &str, o: &Map<String, Value>, v: &mut Violations) -> Option<HookRef> {
    let stack = string_field(&format!("{at}.stack"), o.get("stack"), v);
    let function = string_field(&format!("{at}.function"), o.get("function"), v);
    Some(HookRef { stack: stack?, function: function? })
}

fn configuration(o: &Map<String, Value>) -> Value {
    o.get("configuration").cloned().unwrap_or(Value::Object(Map::new()))
}

fn hook_ref(at: &str, h: &Value, v: &mut Violations) -> Option<HookRef> {
    let Some(o) = h.as_object() else {
        v.push(at, "type", "a hook is {\"stack\": NAME, \"function\": FN}");
        return None;
    };
    for key in o.keys().filter(|k| !matches!(k.as_str(), "stack" | "function")) {
        v.push(format!("{at}.{key}"), "unknown_field", "a hook has stack and function");
    }
    let stack = string_field(&format!("{at}.stack"), o.get("stack"), v);
    let function = string_field(&format!("{at}.function"), o.get("function"), v);
    Some(HookRef { stack: stack?, function: function? })
}

fn string_field(at: &str, value: Option<&Value>, v: &mut Violations) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            v.push(at, "required", "must not be empty");
            None
        }
        Some(_) => {
            v.push(at, "type", "must be a string");
            None
        }
        None => {
            v.push(at, "required", "is required");
            None
        }
    }
}

fn int_field(at: &str, value: Option<&Value>, min: usize, max: usize, v: &mut Violations) -> Option<usize> {
    match value {
        None | Some(Value::Null) => None,
        Some(n) => match n.as_u64() {
            Some(n) if (min as u64..=max as u64).contains(&n) => Some(n as usize),
            _ => {
                v.push(at, "range", format!("must be a whole number from {min} to {max}"));
                None
            }
        },
    }
}

fn export_type(at: &str, e: &Map<String, Value>, v: &mut Violations) -> ExportType {
    let object = |key: &str, v: &mut Violations| -> Map<String, Value> {
        match e.get(key) {
            Some(Value::Object(m)) => m.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                v.push(format!("{at}.{key}"), "type", "must be an object");
                Map::new()
            }
        }
    };
    for key in ["delta", "once", "test"] {
        let wanted = e.get("exportType").and_then(Value::as_str) == Some(key);
        if e.contains_key(key) && !wanted {
            v.push(format!("{at}.{key}"), "conflict", format!("{key} settings need exportType {key:?}"));
        }
    }
    match e.get("exportType") {
        None | Some(Value::Null) => ExportType::All,
        Some(Value::String(t)) => match t.as_str() {
            "all" => ExportType::All,
            "delta" => {
                let d = object("delta", v);
                let date_field = match d.get("dateField") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        v.push(format!("{at}.delta.dateField"), "type", "must be a string");
                        None
                    }
                };
                let lag_offset_ms = match d.get("lagOffset") {
                    None | Some(Value::Null) => 0,
                    Some(n) => match n.as_i64() {
                        Some(n) if (0..=31_536_000_000).contains(&n) => n,
                        _ => {
                            v.push(format!("{at}.delta.lagOffset"), "range", "milliseconds, from 0 to a year");
                            0
                        }
                    },
                };
                for key in d.keys().filter(|k| !matches!(k.as_str(), "dateField" | "lagOffset")) {
                    v.push(format!("{at}.delta.{key}"), "unknown_field", "delta has dateField and lagOffset");
                }
                ExportType::Delta { date_field, lag_offset_ms }
            }
            "once" => {
                let o = object("once", v);
                for key in o.keys().filter(|k| k.as_str() != "booleanField") {
                    v.push(format!("{at}.once.{key}"), "unknown_field", "once has booleanField");
                }
                match o.get("booleanField") {
                    Some(Value::String(s)) if !s.is_empty() => ExportType::Once { boolean_field: s.clone() },
                    _ => {
                        v.push(format!("{at}.once.booleanField"), "required", "a once export names its booleanField");
                        ExportType::All
                    }
                }
            }
            "test" => {
                let o = object("test", v);
                for key in o.keys().filter(|k| k.as_str() != "limit") {
                    v.push(format!("{at}.test.{key}"), "unknown_field", "test has limit");
                }
                let limit = int_field(&format!("{at}.test.limit"), o.get("limit"), 1, 100, v).unwrap_or(1);
                ExportType::Test { limit }
            }
            other => {
                v.push(format!("{at}.exportType"), "one_of", format!("{other:?}: all, delta, once or test"));
                ExportType::All
            }
        },
        Some(_) => {
            v.push(format!("{at}.exportType"), "type", "must be all, delta, once or test");
            ExportType::All
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn orders_sync() -> Value {
        json!({"name": "orders_sync",
         "settings": {"region": "eu"},
         "pageGenerators": [{"name": "orders", "type": "wrapper", "stack": "shop", "function": "exportOrders",
             "pageSize": 20, "hooks": {"preSavePage": {"stack": "shop", "function": "tagPage"}}}],
         "pageProcessors": [{"name": "push", "type": "wrapper", "stack": "shop", "function": "importOrders",
             "mapping": {"fields": [{"extract": "id", "generate": "orderId"},
                                    {"extract": "customer.email", "generate": "email"}]},
             "hooks": {"preMap": {"stack": "shop", "function": "dropCancelled"},
                       "postMap": {"stack": "shop", "function": "stamp"},
                       "postSubmit": {"stack": "shop", "function": "collect"}},
             "postResponseMap": {"stack": "shop", "function": "noteIds"}}]})
    }

    #[test]
    fn the_readme_s_flow_parses() {
        let readme = include_str!("../../../../README.md");
        let marker = "cat > customers.json <<'JSON'\n";
        let start = readme.find(marker).expect("the README's flow") + marker.len();
        let end = start + readme[start..].find("\nJSON\n").unwrap();
        let doc: Value = serde_json::from_str(&readme[start..end]).unwrap();
        let flow = parse_flow(&doc).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(flow.step_names(), ["changed", "load"]);
        assert!(flow.schedule.is_some());
        assert_eq!(flow.secrets().len(), 2);
    }

    #[test]
    fn the_issue_s_document_parses() {
        let flow = parse_flow(&orders_sync()).unwrap();
        assert_eq!(flow.name, "orders_sync");
        assert_eq!(flow.step_names(), ["orders", "push"]);
        assert_eq!(flow.page_generators[0].page_size, 20);
        assert_eq!(flow.parallel_pages, DEFAULT_PARALLEL_PAGES);
        let functions: Vec<String> = flow.functions().iter().map(|(_, h)| h.function.clone()).collect();
        assert_eq!(
            functions,
            ["exportOrders", "tagPage", "importOrders", "dropCancelled", "stamp", "collect", "noteIds"]
        );
    }

    #[test]
    fn hooks_on_the_wrong_stage_and_bad_fields_are_named() {
        let mut doc = orders_sync();
        doc["pageGenerators"][0]["hooks"]["preMap"] = json!({"stack": "shop", "function": "x"});
        doc["pageProcessors"][0]["hooks"]["preSavePage"] = json!({"stack": "shop", "function": "x"});
        doc["pageProcessors"][0]["mapping"]["fields"][0]["extract"] = json!("a..b");
        doc["pageGenerators"][0]["pageSize"] = json!(0);
        doc["pageProcessors"][0]["connection"] = json!("nowhere");
        doc["extra"] = json!(1);
        let err = parse_flow(&doc).unwrap_err();
        let fields: Vec<(&str, &str)> = err.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        for wanted in [
            ("extra", "unknown_field"),
            ("pageGenerators[0].hooks.preMap", "wrong_stage"),
            ("pageGenerators[0].pageSize", "range"),
            ("pageProcessors[0].hooks.preSavePage", "wrong_stage"),
            ("pageProcessors[0].connection", "unknown_connection"),
        ] {
            assert!(fields.contains(&wanted), "{wanted:?} not in {fields:?}");
        }
        assert!(fields.iter().any(|(f, _)| f.starts_with("pageProcessors[0].mapping.fields[0]")), "{fields:?}");
    }

    #[test]
    fn export_types_and_ordering() {
        let mut doc = orders_sync();
        doc["ordered"] = json!(true);
        doc["pageGenerators"][0]["exportType"] = json!("delta");
        doc["pageGenerators"][0]["delta"] = json!({"dateField": "updatedAt", "lagOffset": 5000});
        let flow = parse_flow(&doc).unwrap();
        assert_eq!(flow.parallel_pages, 1);
        assert_eq!(
            flow.page_generators[0].export_type,
            ExportType::Delta { date_field: Some("updatedAt".into()), lag_offset_ms: 5000 }
        );
        doc["pageGenerators"][0]["exportType"] = json!("test");
        doc["pageGenerators"][0].as_object_mut().unwrap().remove("delta");
        doc["pageGenerators"][0]["test"] = json!({"limit": 101});
        let err = parse_flow(&doc).unwrap_err();
        assert_eq!(err.0[0].field, "pageGenerators[0].test.limit");
    }

    #[test]
    fn duplicate_step_names_and_missing_pieces() {
        let mut doc = orders_sync();
        doc["pageProcessors"][0]["name"] = json!("orders");
        doc["pageProcessors"][0].as_object_mut().unwrap().remove("function");
        let err = parse_flow(&doc).unwrap_err();
        let rules: Vec<(&str, &str)> = err.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        assert!(rules.contains(&("pageProcessors[0].function", "required")), "{rules:?}");
        let err = parse_flow(&json!({"name": "x", "pageGenerators": []})).unwrap_err();
        assert_eq!(err.0[0].field, "pageGenerators");
    }
}
