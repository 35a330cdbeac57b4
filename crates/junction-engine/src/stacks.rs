//! Extension stacks (spec 001): integrator.io extension functions hosted
//! behind `integrator-extension`'s `/function` contract. A stack is a
//! module (one `.js` file, or a `.zip`/`.tgz` package with its own npm
//! dependencies) with a system token; every call runs in a warm process of
//! that stack version's own (never shared with another stack or an
//! application), under the runtime's sandbox, and is recorded with its log.
//!
//! The request's validation and the error texts are `junction_core::stack`;
//! the module side (object, function, `this`, Dates, callback or promise,
//! result checks) is the Node harness's `callExtension`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use junction_core::secret::SecretString;
use junction_core::stack::{
    self, CallOutcome, ExtensionError, FunctionCall, Stack, StackCall, StackConfig, StackEnv, StackVersion, Target,
};
use junction_core::validation::Violations;
use junction_core::Invalid;
use junction_runtime::package::{self, ArchiveFormat};
use junction_runtime::{Event, Execution, IntrospectError, Limits, Package, RuntimeError, Script, Status};
use junction_store::{CallFilter, NewStackCall, NewStackVersion, StackSettings};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::{Engine, EngineError, Result};

/// The file a one-file stack's source is stored as.
const SINGLE_FILE: &str = "index.js";
/// Longest a call waits for a free slot of its stack before a 503 (and at
/// most half the stack's call time limit).
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Calls a stack's warm process serves before it is replaced: an extension
/// host is a long-running process; recycling as often as a step's (100)
/// would cost a process start every hundred calls.
const STACK_PROCESS_USES: u32 = 100_000;
/// Log bytes kept per call.
const MAX_CALL_LOG: usize = 256 * 1024;
/// How long a system token that opened a stack is trusted without asking
/// the store (like API tokens', but shorter: rotation is the user's lever).
const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);
const AUTH_CACHE_ENTRIES: usize = 4096;
/// Marks a package directory as complete (unpacked and installed).
const READY: &str = ".junction-ready";
/// Environment names a stack may not set: the runtime's own, and those that
/// change how a program, the loader, libc or Node behave (the module's env
/// is set inside the harness before the module loads, never in the
/// environment of a process Junction starts, so these are a second wall).
const RESERVED_ENV: [&str; 14] = [
    "PATH",
    "HOME",
    "TMPDIR",
    "TMP",
    "TEMP",
    "LANG",
    "LANGUAGE",
    "TZ",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "NLSPATH",
    "LOCPATH",
];
const RESERVED_ENV_PREFIXES: [&str; 15] = [
    "JUNCTION_",
    "npm_",
    "NPM_",
    "NODE_",
    "UV_",
    "LD_",
    "GLIBC_",
    "GCONV_",
    "MALLOC_",
    "OPENSSL_",
    "SSL_",
    "BWRAP",
    "PYTHON",
    "LC_",
    "DYLD_",
];
/// Most bytes of a stack's env, names and values together.
const MAX_ENV_BYTES: usize = 64 * 1024;

/// What was uploaded.
#[derive(Debug, Clone)]
pub enum StackUpload {
    /// The source of one `.js` file; its exports are the DIY module unless a
    /// configuration says otherwise.
    Source(String),
    /// A package directory with `package.json` (and its lock file when it
    /// has dependencies).
    Archive { format: ArchiveFormat, bytes: Vec<u8> },
}

/// A stack's settings as given (absent fields are left as they are).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackChange {
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub env: Option<Vec<StackEnv>>,
}

impl StackChange {
    fn check(&self, base: &str) -> std::result::Result<StackSettings, Invalid> {
        let mut v = Violations::default();
        let field = |f: &str| if base.is_empty() { f.to_string() } else { format!("{base}.{f}") };
        if let Some(t) = self.timeout_seconds {
            if !(1..=stack::MAX_TIMEOUT_SECONDS).contains(&t) {
                v.push(field("timeout_seconds"), "range", format!("must be 1 to {}", stack::MAX_TIMEOUT_SECONDS));
            }
        }
        if let Some(c) = self.max_concurrency {
            if !(1..=stack::MAX_CONCURRENCY).contains(&c) {
                v.push(field("max_concurrency"), "range", format!("must be 1 to {}", stack::MAX_CONCURRENCY));
            }
        }
        if let Some(env) = &self.env {
            let mut seen = std::collections::HashSet::new();
            for (i, entry) in env.iter().enumerate() {
                let f = field(&format!("env[{i}].name"));
                let name = entry.name.as_str();
                let well_formed = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && name.len() <= 128;
                if !well_formed {
                    v.push(&f, "env_name", "must be letters, digits and '_', not starting with a digit (at most 128)");
                } else if RESERVED_ENV.contains(&name) || RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p)) {
                    v.push(&f, "reserved", format!("{name} is set by Junction's runtime"));
                } else if !seen.insert(name) {
                    v.push(&f, "unique", format!("{name} is listed twice"));
                }
                if !entry.encrypted && entry.value.is_none() {
                    v.push(field(&format!("env[{i}].value")), "required", "a plain entry needs a value");
                }
                if entry.value.as_deref().is_some_and(|x| x.contains('\0')) {
                    v.push(field(&format!("env[{i}].value")), "no_nul", "must not contain NUL characters");
                }
            }
            let bytes: usize = env.iter().map(|e| e.name.len() + e.value.as_deref().map_or(0, str::len)).sum();
            if bytes > MAX_ENV_BYTES {
                v.push(
                    field("env"),
                    "too_large",
                    format!("names and values take {bytes} bytes; at most {MAX_ENV_BYTES}"),
                );
            }
        }
        v.finish(StackSettings {
            timeout_seconds: self.timeout_seconds,
            max_concurrency: self.max_concurrency,
            env: self.env.clone(),
        })
    }
}

/// An upload.
#[derive(Debug, Clone)]
pub struct NewStack {
    pub name: String,
    pub upload: StackUpload,
    /// `{"diy": FILE}` or `{"connectors": {ID: FILE}}`; default: a one-file
    /// stack's exports, or a package's `main` (else `index.js`), as DIY.
    pub config: Option<Value>,
    pub settings: StackChange,
}

/// A stack with its versions, as shown.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StackDetail {
    #[serde(flatten)]
    pub stack: Stack,
    pub versions: Vec<StackVersion>,
}

/// The answer to a function call, as the HTTP endpoint sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallAnswer {
    /// 200, 422 or 503.
    pub status: u16,
    /// The JSON text of the body; `None` is an empty body (a function that
    /// answered nothing).
    pub body: Option<String>,
    /// Seconds, with a 503.
    pub retry_after: Option<u32>,
}

impl CallAnswer {
    fn errors(status: u16, errors: &[Value]) -> CallAnswer {
        CallAnswer { status, body: Some(json!({ "errors": errors }).to_string()), retry_after: None }
    }

    /// The request's validation errors, `{code, message}` as the library's
    /// `validateOptions` builds them.
    fn validation_errors(errors: &[ExtensionError]) -> CallAnswer {
        let list: Vec<Value> = errors.iter().map(|e| json!({"code": e.code, "message": e.message})).collect();
        CallAnswer::errors(422, &list)
    }

    /// An error of the call itself, `{message, code}` as the library's
    /// `callFunction` builds those (callers match on the text).
    fn call_error(code: &str, message: &str) -> CallAnswer {
        CallAnswer::errors(422, &[json!({"message": message, "code": code})])
    }
}

/// A `/function` request: its fields as values, except `options` (the
/// page of records, usually all of the body), which stays the JSON text it
/// came as and is handed to the module as it is — building it into a value
/// and writing it out again would cost more than the call.
#[derive(Debug, Clone)]
pub struct StackRequest {
    /// The body without `options`; in its place a stand-in with the same
    /// JavaScript truthiness (`true` for an object or an array), so the
    /// library's validation reads it alike.
    fields: Value,
    /// `options` as sent, when it is an object or an array.
    options: Option<Box<RawValue>>,
}

impl StackRequest {
    /// Reads a JSON body as body-parser's strict mode does: an object, or
    /// an array (read as a request without fields); anything else, or text
    /// that is not JSON, is refused with the parser's message. Of keys given
    /// twice the last counts, as in `JSON.parse`.
    pub fn parse(bytes: &[u8]) -> std::result::Result<StackRequest, String> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'{') => {
                // Only the contract's fields are kept (a body of millions of
                // other keys costs a scan, not memory).
                let read: KnownFields<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                let mut fields = serde_json::Map::new();
                for (key, raw) in read.values {
                    fields.insert(key.to_string(), serde_json::from_str(raw.get()).map_err(|e| e.to_string())?);
                }
                let mut options = None;
                if let Some(raw) = read.options {
                    let text = raw.get();
                    if text.starts_with('{') || text.starts_with('[') {
                        fields.insert("options".into(), Value::Bool(true));
                        // The request travels as one line: whitespace
                        // newlines (never inside a JSON string) become spaces.
                        let one_line = if text.contains(['\n', '\r']) {
                            text.replace(['\n', '\r'], " ")
                        } else {
                            text.to_string()
                        };
                        options = Some(RawValue::from_string(one_line).map_err(|e| e.to_string())?);
                    } else {
                        fields.insert("options".into(), serde_json::from_str(text).map_err(|e| e.to_string())?);
                    }
                }
                Ok(StackRequest { fields: Value::Object(fields), options })
            }
            Some(b'[') => {
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| e.to_string())?;
                Ok(StackRequest { fields: Value::Array(Vec::new()), options: None })
            }
            _ => Err("the body must be a JSON object (or array)".into()),
        }
    }

    /// A request built inside Junction.
    pub fn from_value(body: Value) -> StackRequest {
        StackRequest { fields: body, options: None }
    }

    /// A top-level field (`access_token`), never `options`.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields.as_object().and_then(|o| o.get(key)).filter(|_| key != "options")
    }

    /// `options._integrationId` / `_flowId`, for the call's record.
    fn ids(&self) -> (Option<String>, Option<String>) {
        #[derive(serde::Deserialize)]
        struct Ids {
            #[serde(rename = "_integrationId")]
            integration: Option<Value>,
            #[serde(rename = "_flowId")]
            flow: Option<Value>,
        }
        let ids = match &self.options {
            Some(raw) => serde_json::from_str::<Ids>(raw.get()).ok(),
            None => self.fields.get("options").and_then(|o| serde_json::from_value::<Ids>(o.clone()).ok()),
        };
        ids.map(|i| (text_of(i.integration.as_ref()), text_of(i.flow.as_ref()))).unwrap_or_default()
    }
}

/// The top-level fields of a `/function` body the contract reads, as the
/// text they came as; of a key given twice the last counts (`JSON.parse`);
/// every other key is skipped without being kept.
#[derive(Default)]
struct KnownFields<'a> {
    values: Vec<(&'static str, &'a RawValue)>,
    options: Option<&'a RawValue>,
}

const KNOWN_FIELDS: [&str; 6] = ["diy", "_connectorId", "function", "type", "maxResponseSize", "access_token"];

impl<'de> serde::Deserialize<'de> for KnownFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = KnownFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out = KnownFields::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "options" {
                        out.options = Some(map.next_value()?);
                    } else if let Some(known) = KNOWN_FIELDS.iter().find(|k| **k == key) {
                        let value: &'de RawValue = map.next_value()?;
                        out.values.retain(|(k, _)| k != known);
                        out.values.push((known, value));
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A stack version ready to serve calls in this process.
struct Prepared {
    version: i64,
    updated_at: jiff::Timestamp,
    config: StackConfig,
    script: Script,
    /// The encrypted env values, masked in every log line.
    secrets: Vec<String>,
    timeout: Duration,
    gate: Arc<Semaphore>,
}

/// (stack name, SHA-256 of a system token).
type AuthKey = (String, [u8; 32]);

/// The stacks' state in one process.
#[derive(Debug, Clone)]
pub(crate) struct Stacks {
    inner: Arc<StacksInner>,
}

struct StacksInner {
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
    /// (stack, SHA-256 of a system token that opened it) → the stack and
    /// when it was read: a busy caller costs no store read per call. A
    /// rotation, delete or change in this process applies at once; in
    /// other processes within [`AUTH_CACHE_TTL`]. Wrong tokens are never
    /// remembered.
    authorized: Mutex<HashMap<AuthKey, (Stack, Instant)>>,
    /// One install at a time per package digest.
    installing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    calls: mpsc::Sender<NewStackCall>,
    in_flight: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for StacksInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stacks").finish_non_exhaustive()
    }
}

impl Stacks {
    /// Starts the writer of call records: whatever has accumulated is
    /// stored in one transaction (records are written just after the
    /// answer, not before it; see docs/architecture.md).
    pub fn start(store: junction_store::Store) -> Stacks {
        // Bounded: at most 1,024 records (each log ≤ 256 KiB) wait for the writer.
        let (tx, mut rx) = mpsc::channel::<NewStackCall>(1024);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.insert_stack_calls(&batch).await {
                    tracing::warn!(error = %e, calls = batch.len(), "could not record stack calls");
                }
            }
        });
        Stacks {
            inner: Arc::new(StacksInner {
                prepared: Mutex::default(),
                authorized: Mutex::default(),
                installing: Mutex::default(),
                calls: tx,
                in_flight: Default::default(),
            }),
        }
    }
}

/// Counts a call in flight for as long as it lives.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn upload_field(upload: &StackUpload) -> &'static str {
    match upload {
        StackUpload::Source(_) => "data",
        StackUpload::Archive { .. } => "body",
    }
}

/// A module file named by a configuration must stay inside the package.
fn check_module_path(field: &str, file: &str, v: &mut Violations) {
    let path = std::path::Path::new(file);
    let inside = !file.is_empty()
        && path.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    if !inside {
        v.push(field, "invalid_field", format!("{file:?} must be a relative path inside the module"));
    }
}

fn config_files(config: &StackConfig) -> Vec<(String, &str)> {
    match config {
        StackConfig::Diy { module } => vec![("config.diy".to_string(), module.as_str())],
        StackConfig::Connectors(map) => {
            map.iter().map(|(id, f)| (format!("config.connectors.{id}"), f.as_str())).collect()
        }
    }
}

fn config_json(config: &StackConfig) -> Value {
    match config {
        StackConfig::Diy { module } => json!({ "diy": module }),
        StackConfig::Connectors(map) => json!({ "connectors": map }),
    }
}

impl Engine {
    fn stacks_dir(&self) -> PathBuf {
        self.runtime.config().dir.join("stacks")
    }

    /// Stores a new version of a stack (creating the stack, with its system
    /// token, when the name is new): the upload is unpacked, its
    /// dependencies installed with `npm ci` and its modules loaded once;
    /// anything that fails is a 400 naming the problem.
    pub async fn upload_stack(&self, new: NewStack) -> Result<(StackVersion, Option<SecretString>)> {
        let mut v = Violations::default();
        if let Err(e) = junction_core::name::check_name("name", &new.name) {
            v.add(e);
        }
        let settings = match new.settings.check("") {
            Ok(s) => Some(s),
            Err(Invalid(list)) => {
                list.into_iter().for_each(|x| v.add(x));
                None
            }
        };
        let field = upload_field(&new.upload);
        let one_file = matches!(new.upload, StackUpload::Source(_));
        // Shared, not copied, with the unpacking thread.
        let (format, bytes): (&str, Arc<[u8]>) = match new.upload {
            StackUpload::Source(source) => {
                if source.trim().is_empty() {
                    v.push("data", "required", "must be the source of the module");
                }
                ("js", source.into_bytes().into())
            }
            StackUpload::Archive { format, bytes } => (format.as_str(), bytes.into()),
        };
        let settings = v.finish(settings)?.unwrap_or_default();
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let dir = self.materialize(&sha256, format, &bytes, field).await?;

        // The configuration: given, or the default of the upload's kind.
        let given = match new.config {
            Some(c) => c,
            None => {
                let main = if one_file { SINGLE_FILE.to_string() } else { package_main(&dir) };
                json!({ "diy": main })
            }
        };
        let config = stack::check_configuration(&given).map_err(|errors| {
            Invalid(errors.into_iter().map(|e| junction_core::Violation::new("config", &e.code, e.message)).collect())
        })?;
        let mut v = Violations::default();
        for (f, file) in config_files(&config) {
            check_module_path(&f, file, &mut v);
        }
        v.finish(())?;
        let config_value = config_json(&config);

        // Loaded once, in a process of its own that then ends.
        let script = Script::package(
            format!("stack:{}", new.name),
            &sha256,
            &config_value.to_string(),
            Package { dir: dir.clone(), env: plain_env(settings.env.as_deref().unwrap_or_default()) },
        );
        let functions = match self.runtime.introspect(&script).await {
            Ok(info) => info.functions.unwrap_or(Value::Null),
            Err(IntrospectError::Rejected(msg)) => return Err(Invalid::one(field, "loads", msg).into()),
            Err(IntrospectError::Runtime(e)) => return Err(EngineError::Unavailable(e.to_string())),
        };
        let stored = self
            .store
            .put_stack_version(
                &NewStackVersion {
                    name: &new.name,
                    config: &config_value,
                    format,
                    archive: &bytes,
                    functions: &functions,
                },
                &settings,
            )
            .await?;
        self.stacks.forget(&new.name);
        Ok(stored)
    }

    /// The unpacked, installed directory of an upload, made once per
    /// digest and kept under the runtime dir (a server that never saw the
    /// upload makes it from the stored archive on its first call).
    async fn materialize(&self, sha256: &str, format: &str, bytes: &Arc<[u8]>, field: &str) -> Result<PathBuf> {
        let dir = self.stacks_dir().join(sha256);
        if dir.join(READY).is_file() {
            return Ok(dir);
        }
        let lock = {
            let mut map = self.stacks.inner.installing.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(sha256.to_string()).or_default().clone()
        };
        let _held = lock.lock().await;
        if dir.join(READY).is_file() {
            return Ok(dir);
        }
        let refuse = |rule: &str, msg: String| EngineError::Invalid(Invalid::one(field, rule, msg));
        let io = |e: std::io::Error| EngineError::Unavailable(format!("stack files: {e}"));
        std::fs::create_dir_all(self.stacks_dir()).map_err(io)?;
        let partial = self.stacks_dir().join(format!(".{sha256}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let built: Result<()> = async {
            match format {
                "js" => {
                    std::fs::create_dir_all(&partial).map_err(io)?;
                    std::fs::write(partial.join(SINGLE_FILE), &bytes[..]).map_err(io)?;
                }
                _ => {
                    let archive = if format == "zip" { ArchiveFormat::Zip } else { ArchiveFormat::Tgz };
                    let (bytes, target) = (bytes.clone(), partial.clone());
                    tokio::task::spawn_blocking(move || package::unpack(archive, &bytes, &target))
                        .await
                        .map_err(|e| EngineError::Unavailable(format!("unpacking: {e}")))?
                        .map_err(|m| refuse("archive", m))?;
                    let manifest = partial.join("package.json");
                    let text = std::fs::read_to_string(&manifest)
                        .map_err(|_| refuse("package_json", "the archive has no package.json at its root".into()))?;
                    let manifest: Value = serde_json::from_str(&text)
                        .map_err(|e| refuse("package_json", format!("package.json does not parse: {e}")))?;
                    let has_deps =
                        manifest.get("dependencies").and_then(Value::as_object).is_some_and(|d| !d.is_empty());
                    if has_deps {
                        let locked =
                            ["package-lock.json", "npm-shrinkwrap.json"].iter().any(|f| partial.join(f).is_file());
                        if !locked {
                            return Err(refuse(
                                "lock_file",
                                "package.json has dependencies but the archive has no package-lock.json: \
                                 run `npm install` and include the lock file"
                                    .into(),
                            ));
                        }
                        package::install(&self.runtime.config().npm, &partial)
                            .await
                            .map_err(|m| refuse("npm_ci", m))?;
                    }
                }
            }
            std::fs::write(partial.join(READY), sha256).map_err(io)?;
            Ok(())
        }
        .await;
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        match std::fs::rename(&partial, &dir) {
            Ok(()) => Ok(dir),
            Err(_) if dir.join(READY).is_file() => {
                let _ = std::fs::remove_dir_all(&partial);
                Ok(dir)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub async fn stacks(&self) -> Result<Vec<Stack>> {
        Ok(self.store.list_stacks().await?)
    }

    pub async fn stack(&self, name: &str) -> Result<StackDetail> {
        let stack = self.store.get_stack(name).await?.ok_or_else(|| EngineError::NotFound(format!("stack {name}")))?;
        let versions = self.store.stack_versions(name).await?;
        Ok(StackDetail { stack, versions })
    }

    pub async fn delete_stack(&self, name: &str) -> Result<()> {
        let deleted = self.store.delete_stack(name).await?;
        self.stacks.forget(name);
        if deleted {
            Ok(())
        } else {
            Err(EngineError::NotFound(format!("stack {name}")))
        }
    }

    /// A new system token (shown once); the old one stops working at once.
    pub async fn rotate_stack_token(&self, name: &str) -> Result<SecretString> {
        let token = self.store.rotate_stack_token(name).await?;
        self.stacks.forget(name);
        token.ok_or_else(|| EngineError::NotFound(format!("stack {name}")))
    }

    pub async fn update_stack(&self, name: &str, change: &StackChange) -> Result<Stack> {
        let settings = change.check("")?;
        let stack = self.store.update_stack_settings(name, &settings).await?;
        self.stacks.forget(name);
        stack.ok_or_else(|| EngineError::NotFound(format!("stack {name}")))
    }

    pub async fn stack_calls(&self, name: &str, filter: &CallFilter) -> Result<Vec<StackCall>> {
        if self.store.get_stack(name).await?.is_none() && self.store.stack_versions(name).await?.is_empty() {
            return Err(EngineError::NotFound(format!("stack {name}")));
        }
        Ok(self.store.list_stack_calls(name, filter).await?)
    }

    pub async fn stack_call(&self, name: &str, id: i64) -> Result<StackCall> {
        self.store
            .get_stack_call(name, id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("call {id} of stack {name}")))
    }

    /// Calls in flight in this process (`GET /stacks/{name}/openConnections`).
    pub fn stack_calls_in_flight(&self) -> usize {
        self.stacks.inner.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `POST /stacks/{name}/function`: `None` when the stack does not exist
    /// or the token is not its system token (the caller answers both with
    /// the same 401).
    pub async fn call_stack_with_token(
        &self,
        name: &str,
        token: Option<&str>,
        request: &StackRequest,
        trace_id: Option<&str>,
    ) -> Result<Option<CallAnswer>> {
        let Some(token) = token.filter(|t| !t.is_empty()) else { return Ok(None) };
        let key = {
            use sha2::Digest;
            (name.to_string(), <[u8; 32]>::from(sha2::Sha256::digest(token.as_bytes())))
        };
        let stack = match self.stacks.authorized(&key) {
            Some(stack) => stack,
            None => {
                let Some(stack) = self.store.stack_for_call(name, token).await? else { return Ok(None) };
                self.stacks.remember(key, &stack);
                stack
            }
        };
        Ok(Some(self.call_stack(&stack, request, trace_id).await?))
    }

    /// Calls a function of a stack from inside Junction (record flows' hooks
    /// and wrappers): `type` and `function` as in a `/function` request,
    /// with the same validation, errors and record.
    pub async fn call_stack_function(
        &self,
        name: &str,
        kind: Option<&str>,
        function: &str,
        options: Value,
    ) -> Result<CallAnswer> {
        let stack = self.store.get_stack(name).await?.ok_or_else(|| EngineError::NotFound(format!("stack {name}")))?;
        let mut body = json!({ "diy": true, "function": function, "options": options });
        if let Some(kind) = kind {
            body["type"] = json!(kind);
        }
        self.call_stack(&stack, &StackRequest::from_value(body), None).await
    }

    async fn call_stack(&self, stack: &Stack, request: &StackRequest, trace_id: Option<&str>) -> Result<CallAnswer> {
        let inner = &self.stacks.inner;
        inner.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _counted = InFlight(&inner.in_flight);
        let started_at_ms = self.store.now().as_millisecond();
        let started = Instant::now();
        let prepared = self.prepared(stack).await?;
        let mut record = CallRecord::of(stack, prepared.version, request, trace_id, started_at_ms);
        let answer = match stack::parse_function_call(&request.fields, &prepared.config) {
            Err(errors) => {
                record.error_code = errors.first().map(|e| e.code.clone());
                CallAnswer::validation_errors(&errors)
            }
            Ok(call) => self.execute_call(&prepared, stack, call, request.options.as_deref(), &mut record).await?,
        };
        record.outcome = match (answer.status, record.error_code.as_deref()) {
            (200, _) => CallOutcome::Succeeded,
            (_, Some("timeout")) => CallOutcome::TimedOut,
            _ => CallOutcome::Failed,
        };
        record.duration_ms = started.elapsed().as_millis() as i64;
        // Backpressure, not loss, when the writer is behind.
        let _ = inner.calls.send(record.finish()).await;
        Ok(answer)
    }

    async fn execute_call(
        &self,
        prepared: &Prepared,
        stack: &Stack,
        mut call: FunctionCall,
        raw_options: Option<&RawValue>,
        record: &mut CallRecord,
    ) -> Result<CallAnswer> {
        let module = prepared.config.module(&call.target).unwrap_or_default().to_string();
        let wait = QUEUE_WAIT.min(prepared.timeout / 2);
        let permit = match tokio::time::timeout(wait, prepared.gate.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                record.error_code = Some("busy".into());
                let message = format!(
                    "stack {} is serving {} calls at once (its max_concurrency); try again",
                    stack.name, stack.max_concurrency
                );
                let mut answer = CallAnswer::errors(503, &[json!({"code": "busy", "message": message})]);
                answer.retry_after = Some(1);
                return Ok(answer);
            }
        };
        let object = call.kind.as_ref().map(|k| k.object_name());
        let mut execution = match raw_options {
            Some(options) => {
                let text = format!(
                    r#"{{"module":{},"object":{},"function":{},"options":{}}}"#,
                    Value::from(module.as_str()),
                    object.map(Value::from).unwrap_or(Value::Null),
                    Value::from(call.function.as_str()),
                    options.get()
                );
                let mut e = Execution::new(prepared.script.clone(), Value::Null);
                e.raw_input = RawValue::from_string(text).ok();
                e
            }
            None => {
                let input = json!({
                    "module": module,
                    "object": object,
                    "function": call.function,
                    "options": std::mem::take(&mut call.options),
                });
                Execution::new(prepared.script.clone(), input)
            }
        };
        execution.entry = "extension".into();
        execution.tenant = format!("stack:{}@{}", stack.name, prepared.version);
        execution.secrets = prepared.secrets.clone();
        execution.max_uses = Some(STACK_PROCESS_USES);
        execution.limits = Limits {
            wall_time: prepared.timeout,
            max_log_bytes: MAX_CALL_LOG,
            // The result travels as JSON text inside the protocol's line.
            max_data_bytes: 63 * 1024 * 1024,
        };
        record.log.push(junction_runtime::log_line("LOG", &record.metadata_line(&call)));
        let log = &mut record.log;
        let outcome = self
            .runtime
            .execute(
                &execution,
                &mut |e| {
                    if let Event::Log { line, .. } = e {
                        log.push(line)
                    }
                },
                std::future::pending(),
            )
            .await;
        drop(permit);
        let outcome = match outcome {
            Ok(o) => o,
            Err(RuntimeError::Unavailable(why)) => {
                record.error_code = Some("unavailable".into());
                let message = format!("scripts cannot run on this server: {why}");
                let mut answer = CallAnswer::errors(503, &[json!({"code": "unavailable", "message": message})]);
                answer.retry_after = Some(5);
                return Ok(answer);
            }
            Err(e) => {
                record.error_code = Some("crashed".into());
                return Ok(CallAnswer::call_error("crashed", &e.to_string()));
            }
        };
        let fail = |record: &mut CallRecord, error: Value| {
            record.error_code = error.get("code").and_then(Value::as_str).map(str::to_string);
            CallAnswer::errors(422, &[error])
        };
        let library = |record: &mut CallRecord, e: ExtensionError| {
            record.error_code = Some(e.code.clone());
            CallAnswer::call_error(&e.code, &e.message)
        };
        Ok(match outcome.status {
            Status::Succeeded => {
                let data = outcome.data.unwrap_or(Value::Null);
                match data.get("outcome").and_then(Value::as_str) {
                    Some("ok") => {
                        let size = data.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
                        if let Some(e) = stack::check_response_size(size, &call.max_response_size) {
                            library(record, e)
                        } else {
                            record.response_size = size as i64;
                            let body = data.get("json").and_then(Value::as_str).map(str::to_string);
                            CallAnswer { status: 200, body, retry_after: None }
                        }
                    }
                    Some("error") => fail(record, data.get("error").cloned().unwrap_or_else(|| json!({}))),
                    Some("object_not_found") => {
                        let kind = call.kind.clone().unwrap_or(stack::Kind::Other(String::new()));
                        library(record, stack::object_not_found(&kind))
                    }
                    Some("invalid_function") => library(record, stack::invalid_function()),
                    _ => library(record, stack::invalid_extension_response()),
                }
            }
            Status::TimedOut => fail(
                record,
                json!({"message": format!(
                    "The function did not answer within {} seconds.", prepared.timeout.as_secs()), "code": "timeout"}),
            ),
            Status::Failed | Status::Stopped => {
                let code = outcome.kind.clone().filter(|k| !k.is_empty()).unwrap_or_else(|| "Error".into());
                fail(record, json!({"message": outcome.error.unwrap_or_default(), "code": code}))
            }
            Status::Crashed => fail(
                record,
                json!({"message": outcome.error.unwrap_or_else(|| "the function's process ended".into()), "code": "crashed"}),
            ),
        })
    }

    /// The stack's current version, ready in this process (its directory
    /// made from the stored archive when this server has not seen it).
    async fn prepared(&self, stack: &Stack) -> Result<Arc<Prepared>> {
        if let Some(p) = self.stacks.get(&stack.name) {
            if p.version == stack.version && p.updated_at == stack.updated_at {
                return Ok(p);
            }
        }
        let (format, bytes) = self
            .store
            .stack_archive(&stack.name, stack.version)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("stack {} version {}", stack.name, stack.version)))?;
        let dir = self.materialize(&stack.sha256, &format, &bytes.into(), "body").await.map_err(|e| match e {
            EngineError::Invalid(i) => {
                EngineError::Unavailable(format!("stack {} cannot be installed here: {i}", stack.name))
            }
            other => other,
        })?;
        let config = stack::check_configuration(&stack.config).map_err(|_| {
            EngineError::Store(junction_store::StoreError::Corrupt(format!("stack {} config", stack.name)))
        })?;
        let sealed = self.store.stack_env_secrets(&stack.name).await?;
        let mut env = plain_env(&stack.env);
        let mut secrets = Vec::new();
        for (name, value) in sealed {
            secrets.push(value.expose().to_string());
            env.push((name, value.expose().to_string()));
        }
        let script = Script::package(
            format!("stack:{}", stack.name),
            &stack.sha256,
            &stack.config.to_string(),
            Package { dir, env },
        );
        let prepared = Arc::new(Prepared {
            version: stack.version,
            updated_at: stack.updated_at,
            config,
            script,
            secrets,
            timeout: Duration::from_secs(stack.timeout_seconds.into()),
            gate: Arc::new(Semaphore::new(stack.max_concurrency as usize)),
        });
        // Calls that prepared the same version at once share the first one
        // (and its gate: the concurrency limit is per stack).
        let mut map = self.stacks.inner.prepared.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&stack.name) {
            Some(p) if p.version == stack.version && p.updated_at == stack.updated_at => Ok(p.clone()),
            _ => {
                map.insert(stack.name.clone(), prepared.clone());
                Ok(prepared)
            }
        }
    }
}

impl Stacks {
    fn get(&self, name: &str) -> Option<Arc<Prepared>> {
        self.inner.prepared.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    fn forget(&self, name: &str) {
        self.inner.prepared.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        self.inner.authorized.lock().unwrap_or_else(|e| e.into_inner()).retain(|(n, _), _| n != name);
    }

    fn authorized(&self, key: &AuthKey) -> Option<Stack> {
        let map = self.inner.authorized.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).filter(|(_, at)| at.elapsed() < AUTH_CACHE_TTL).map(|(s, _)| s.clone())
    }

    fn remember(&self, key: AuthKey, stack: &Stack) {
        let mut map = self.inner.authorized.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= AUTH_CACHE_ENTRIES {
            map.clear();
        }
        map.insert(key, (stack.clone(), Instant::now()));
    }
}

/// The plain entries of a stack's environment (encrypted ones are added
/// from the store's sealed values).
fn plain_env(env: &[StackEnv]) -> Vec<(String, String)> {
    env.iter().filter(|e| !e.encrypted).filter_map(|e| Some((e.name.clone(), e.value.clone()?))).collect()
}

/// A package's `main` (without `./`), or `index.js`.
fn package_main(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|m| m.get("main").and_then(Value::as_str).map(|s| s.trim_start_matches("./").to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| SINGLE_FILE.to_string())
}

/// A call's record while it runs.
struct CallRecord {
    stack: String,
    version: i64,
    started_at_ms: i64,
    duration_ms: i64,
    function: String,
    kind: Option<String>,
    target: Option<String>,
    integration_id: Option<String>,
    flow_id: Option<String>,
    trace_id: Option<String>,
    outcome: CallOutcome,
    error_code: Option<String>,
    response_size: i64,
    log: Vec<String>,
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl CallRecord {
    fn of(
        stack: &Stack,
        version: i64,
        request: &StackRequest,
        trace_id: Option<&str>,
        started_at_ms: i64,
    ) -> CallRecord {
        let body = &request.fields;
        let (integration_id, flow_id) = request.ids();
        let target = if body.get("diy").is_some_and(|d| !matches!(d, Value::Null | Value::Bool(false))) {
            Some("diy".to_string())
        } else {
            text_of(body.get("_connectorId"))
        };
        CallRecord {
            stack: stack.name.clone(),
            version,
            started_at_ms,
            duration_ms: 0,
            function: text_of(body.get("function")).unwrap_or_default(),
            kind: text_of(body.get("type")),
            target,
            integration_id,
            flow_id,
            trace_id: trace_id.filter(|t| !t.is_empty()).map(|t| t.chars().take(256).collect()),
            outcome: CallOutcome::Failed,
            error_code: None,
            response_size: 0,
            log: Vec::new(),
        }
    }

    /// integrator-extension's own first line of a call
    /// (`logFunctionMetadata`), with the trace id.
    fn metadata_line(&self, call: &FunctionCall) -> String {
        let mut parts = vec!["logName=callFunctionInvoked".to_string()];
        if let Some(kind) = &call.kind {
            parts.push(format!("type={}", kind.as_type()));
        }
        parts.push(format!("function={}", call.function));
        if let Target::Connector(id) = &call.target {
            parts.push(format!("_connectorId={id}"));
        }
        if let Some(i) = &self.integration_id {
            parts.push(format!("_integrationId={i}"));
        }
        if let Some(f) = &self.flow_id {
            parts.push(format!("_flowId={f}"));
        }
        if let Some(t) = &self.trace_id {
            parts.push(format!("traceId={t}"));
        }
        parts.join(", ")
    }

    fn finish(self) -> NewStackCall {
        // PostgreSQL refuses NUL in text, and one refused record would fail
        // its whole batch: anything a caller or a module sent is cleaned.
        let clean = |s: String| if s.contains('\0') { s.replace('\0', "\u{FFFD}") } else { s };
        let clean_opt = |s: Option<String>| s.map(clean);
        let mut log = clean(self.log.join("\n"));
        if log.len() > MAX_CALL_LOG {
            let mut cut = MAX_CALL_LOG;
            while !log.is_char_boundary(cut) {
                cut -= 1;
            }
            log.truncate(cut);
        }
        NewStackCall {
            stack: self.stack,
            version: self.version,
            started_at_ms: self.started_at_ms,
            duration_ms: self.duration_ms,
            function: clean(self.function),
            kind: clean_opt(self.kind),
            target: clean_opt(self.target),
            integration_id: clean_opt(self.integration_id),
            flow_id: clean_opt(self.flow_id),
            trace_id: clean_opt(self.trace_id),
            outcome: self.outcome,
            error_code: clean_opt(self.error_code),
            response_size: self.response_size,
            log,
        }
    }
}
