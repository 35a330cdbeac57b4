//! Stacks: integrator.io extension functions hosted by Junction, with the
//! request contract of the npm packages `integrator-extension` and
//! `express-integrator-extension` (see `docs/stacks-contract.md`).
//!
//! This module holds the pure half of that contract: the check of a stack's
//! configuration (`{"diy": "index.js"}` or `{"connectors": {"<id>": "x.js"}}`),
//! the validation of a `POST /stacks/{name}/function` body into a
//! [`FunctionCall`], the `type` → module object mapping and the error texts.
//! Codes and messages are copied from the library: they are part of the
//! contract and integrator.io matches on them. This contract's error shape is
//! `{"code","message"}` (no field path), so it does not use [`crate::Invalid`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The library's default `maxResponseSize`: 5 MiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 5 * 1024 * 1024;

/// The option fields the library turns into `Date` objects (when truthy)
/// before calling the function.
pub const DATE_OPTIONS: [&str; 2] = ["lastExportDateTime", "currentExportDateTime"];

/// One error of the extension contract, serialised as `{"code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionError {
    pub code: String,
    pub message: String,
}

impl ExtensionError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_string(), message: message.into() }
    }
}

// --- the library's messages (lib/errors.js), verbatim ---------------------

const MISSING_REQUIRED_FIELD: &str = "missing_required_field";
const INVALID_FIELD: &str = "invalid_field";

const MSG_DIY_OR_CONNECTOR_ID: &str = "Need to set either the diy or _connectorId field in extension options.";
const MSG_DIY_DOESNT_EXIST: &str = "DIY is not configured in the extension configuration.";
// The typo "does't" is the library's and part of the contract.
const MSG_CONNECTOR_ID_DOESNT_EXIST: &str = "The _connectorId set in the extension options does't match any of the _connectorId's present in extension configuration.";
const MSG_MISSING_FUNCTION: &str = "Missing required field function in the extension options.";
const MSG_FUNCTION_NOT_STRING: &str = "The function field in the extension options must be of type string.";
const MSG_MISSING_OPTIONS: &str = "Function options haven't been provided.";
const MSG_INCORRECT_FUNCTION: &str = "The function passed in the extension options doesn't map to a function.";
const MSG_NOT_SERIALIZABLE: &str = "Extension response is not serializable.";

const MSG_CONFIG_NOT_PROVIDED: &str = "Options parameter is not provided.";
const MSG_CONFIG_DIY_OR_CONNECTORS: &str = "Either DIY or connectors field needs to be set.";
const MSG_CONFIG_BOTH: &str = "The configuration object should only have one of the diy or connectors field.";
const MSG_CONFIG_NO_CONNECTORS: &str = "No connector modules provided in the connectors field.";

/// `invalid_function`: the named member of the object is not a function.
pub fn invalid_function() -> ExtensionError {
    ExtensionError::new("invalid_function", MSG_INCORRECT_FUNCTION)
}

/// `invalid_extension_response`: the result is not plain JSON data (a cycle,
/// a `Date`, an `Error`, a class instance, a function, ...).
pub fn invalid_extension_response() -> ExtensionError {
    ExtensionError::new("invalid_extension_response", MSG_NOT_SERIALIZABLE)
}

/// `response_size_exceeded` with the limit as the library prints it.
pub fn response_size_exceeded(limit: &ResponseLimit) -> ExtensionError {
    ExtensionError::new("response_size_exceeded", format!("response stream exceeded limit of {} bytes.", limit.shown))
}

/// `maxResponseSize || 5 MiB` as the library compares with it
/// (`size > maxResponseSize`, JavaScript's coercion): a numeric string
/// limits, a negative number refuses every result, a value that is not a
/// number (NaN) never limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseLimit {
    /// The limit as a JavaScript number (NaN: no limit).
    pub limit: f64,
    /// The value as the message prints it (`String(maxResponseSize)`).
    pub shown: String,
}

impl ResponseLimit {
    pub fn default_limit() -> ResponseLimit {
        ResponseLimit { limit: DEFAULT_MAX_RESPONSE_SIZE as f64, shown: DEFAULT_MAX_RESPONSE_SIZE.to_string() }
    }

    /// The bytes a result may take, for the runtime's own cap (`None`:
    /// unlimited by the caller).
    pub fn bytes(&self) -> Option<usize> {
        (self.limit.is_finite() && self.limit >= 0.0).then_some(self.limit as usize)
    }
}

/// `object_not_found` for a `type` whose object the module lacks. The message
/// names the request's `type` as sent (`hook`), not the object (`hooks`).
pub fn object_not_found(kind: &Kind) -> ExtensionError {
    ExtensionError::new("object_not_found", format!("The object {} doesn't exist in the module.", kind.as_type()))
}

// --- JavaScript value semantics the library relies on ---------------------

/// JavaScript truthiness of a JSON value (`undefined` is `None`).
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_)) | Some(Value::Object(_)) => true,
    }
}

/// lodash `isEmpty` on a JSON value: numbers and booleans count as empty.
fn lodash_is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// JavaScript's `String(value)`, which is also how a value becomes a property
/// key (`module[type]`, `connectors[_connectorId]`) or part of a message.
fn js_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            items.iter().map(|v| if v.is_null() { String::new() } else { js_string(v) }).collect::<Vec<_>>().join(",")
        }
        Value::Object(_) => "[object Object]".to_string(),
    }
}

// --- configuration --------------------------------------------------------

/// A stack's validated configuration: which module file(s) it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackConfig {
    /// `{"diy": "<file>"}`: one module for do-it-yourself integrations.
    Diy { module: String },
    /// `{"connectors": {"<_connectorId>": "<file>", ...}}`, never empty.
    Connectors(BTreeMap<String, String>),
}

impl StackConfig {
    pub fn has_diy(&self) -> bool {
        matches!(self, StackConfig::Diy { .. })
    }

    /// The module file of a connector (own keys only, see the contract doc).
    pub fn connector_module(&self, connector_id: &str) -> Option<&str> {
        match self {
            StackConfig::Connectors(map) => map.get(connector_id).map(String::as_str),
            StackConfig::Diy { .. } => None,
        }
    }

    /// The module file a call addresses.
    pub fn module(&self, target: &Target) -> Option<&str> {
        match (self, target) {
            (StackConfig::Diy { module }, Target::Diy) => Some(module),
            (_, Target::Connector(id)) => self.connector_module(id),
            (StackConfig::Connectors(_), Target::Diy) => None,
        }
    }
}

/// The library's `loadConfiguration` checks, in its order, followed by the
/// shape Junction's upload accepts. The library stops at its first failure,
/// so a library error is always alone; the shape errors (Junction's own,
/// code `invalid_field`) are collected together.
pub fn check_configuration(config: &Value) -> Result<StackConfig, Vec<ExtensionError>> {
    if lodash_is_empty(config) {
        return Err(vec![ExtensionError::new("missing_parameter", MSG_CONFIG_NOT_PROVIDED)]);
    }
    let diy = config.get("diy");
    let connectors = config.get("connectors");
    let (has_diy, has_connectors) = (truthy(diy), truthy(connectors));
    if !has_diy && !has_connectors {
        return Err(vec![ExtensionError::new(MISSING_REQUIRED_FIELD, MSG_CONFIG_DIY_OR_CONNECTORS)]);
    }
    if has_diy && has_connectors {
        return Err(vec![ExtensionError::new("invalid_configuration", MSG_CONFIG_BOTH)]);
    }
    if let Some(connectors) = connectors.filter(|_| has_connectors) {
        if lodash_is_empty(connectors) {
            return Err(vec![ExtensionError::new(INVALID_FIELD, MSG_CONFIG_NO_CONNECTORS)]);
        }
    }

    // Junction's shape (the library accepts any module object here).
    if has_diy {
        return match diy {
            Some(Value::String(module)) => Ok(StackConfig::Diy { module: module.clone() }),
            _ => Err(vec![ExtensionError::new(INVALID_FIELD, "The diy field must be the file name of the module.")]),
        };
    }
    let Some(Value::Object(entries)) = connectors else {
        return Err(vec![ExtensionError::new(
            INVALID_FIELD,
            "The connectors field must map each _connectorId to the file name of its module.",
        )]);
    };
    let mut errors = Vec::new();
    let mut map = BTreeMap::new();
    for (id, module) in entries {
        match module {
            Value::String(file) if !file.is_empty() => {
                map.insert(id.clone(), file.clone());
            }
            _ => errors.push(ExtensionError::new(
                INVALID_FIELD,
                format!("The module of connector {id} must be the file name of the module."),
            )),
        }
    }
    if errors.is_empty() {
        Ok(StackConfig::Connectors(map))
    } else {
        Err(errors)
    }
}

// --- the function request -------------------------------------------------

/// Which module of the stack a call addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Diy,
    Connector(String),
}

/// The request's `type`: which object of the module holds the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Hook,
    Wrapper,
    Setting,
    Utility,
    Installer,
    Uninstaller,
    /// Any other truthy `type`; the library uses it as the object name as is
    /// (so `"hooks"` also reaches `module.hooks`).
    Other(String),
}

impl Kind {
    /// The `type` as the library sees it (JavaScript `String(type)`).
    pub fn from_type(type_: &str) -> Kind {
        match type_ {
            "hook" => Kind::Hook,
            "wrapper" => Kind::Wrapper,
            "setting" => Kind::Setting,
            "utility" => Kind::Utility,
            "installer" => Kind::Installer,
            "uninstaller" => Kind::Uninstaller,
            other => Kind::Other(other.to_string()),
        }
    }

    /// The request's `type` text, as used in the `object_not_found` message.
    pub fn as_type(&self) -> &str {
        match self {
            Kind::Hook => "hook",
            Kind::Wrapper => "wrapper",
            Kind::Setting => "setting",
            Kind::Utility => "utility",
            Kind::Installer => "installer",
            Kind::Uninstaller => "uninstaller",
            Kind::Other(s) => s,
        }
    }

    /// The module member that holds the functions (`util.getObjectName`).
    pub fn object_name(&self) -> &str {
        match self {
            Kind::Hook => "hooks",
            Kind::Wrapper => "wrappers",
            Kind::Setting => "settings",
            Kind::Utility => "utilities",
            Kind::Installer => "installer",
            Kind::Uninstaller => "uninstaller",
            Kind::Other(s) => s,
        }
    }
}

/// A validated `POST /stacks/{name}/function` body.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    pub target: Target,
    pub function: String,
    /// `None`: the function is a top-level member of the module.
    pub kind: Option<Kind>,
    pub max_response_size: ResponseLimit,
    /// The function's `options` argument, as sent (never falsy).
    pub options: Value,
}

/// Validates a function request against the stack's configuration, with the
/// library's rules in its order (`validateOptions`): target, `function`,
/// `options`; every failure of one request is reported together. A body that
/// is not an object is read as `{}` (as the library reads a body-less request).
///
/// `maxResponseSize` is not validated by the library (falsy means the default,
/// anything else is used as is); Junction accepts a positive integer or a
/// string of digits and adds its own `invalid_field` error, last, for the rest.
pub fn parse_function_call(body: &Value, config: &StackConfig) -> Result<FunctionCall, Vec<ExtensionError>> {
    let get = |key: &str| body.as_object().and_then(|o| o.get(key));
    let mut errors = Vec::new();

    let target = if truthy(get("diy")) {
        if !config.has_diy() {
            errors.push(ExtensionError::new(MISSING_REQUIRED_FIELD, MSG_DIY_DOESNT_EXIST));
        }
        Some(Target::Diy)
    } else if truthy(get("_connectorId")) {
        let id = js_string(get("_connectorId").unwrap_or(&Value::Null));
        if config.connector_module(&id).is_none() {
            errors.push(ExtensionError::new(INVALID_FIELD, MSG_CONNECTOR_ID_DOESNT_EXIST));
        }
        Some(Target::Connector(id))
    } else {
        errors.push(ExtensionError::new(MISSING_REQUIRED_FIELD, MSG_DIY_OR_CONNECTOR_ID));
        None
    };

    let function = match get("function") {
        f if !truthy(f) => {
            errors.push(ExtensionError::new(MISSING_REQUIRED_FIELD, MSG_MISSING_FUNCTION));
            None
        }
        Some(Value::String(name)) => Some(name.clone()),
        _ => {
            errors.push(ExtensionError::new(INVALID_FIELD, MSG_FUNCTION_NOT_STRING));
            None
        }
    };

    let options = get("options").filter(|o| truthy(Some(o))).cloned();
    if options.is_none() {
        errors.push(ExtensionError::new(MISSING_REQUIRED_FIELD, MSG_MISSING_OPTIONS));
    }

    let max_response_size = max_response_size(get("maxResponseSize"));

    let kind = get("type").filter(|t| truthy(Some(t))).map(|t| Kind::from_type(&js_string(t)));

    match (target, function, options) {
        (Some(target), Some(function), Some(options)) if errors.is_empty() => {
            Ok(FunctionCall { target, function, kind, max_response_size, options })
        }
        _ => Err(errors),
    }
}

/// `maxResponseSize || 5 MiB` with JavaScript's `ToNumber` for the
/// comparison and `String()` for the message.
fn max_response_size(value: Option<&Value>) -> ResponseLimit {
    match value {
        Some(v) if truthy(Some(v)) => ResponseLimit { limit: js_number(v), shown: js_string(v) },
        _ => ResponseLimit::default_limit(),
    }
}

/// JavaScript's `ToNumber` of a JSON value.
fn js_number(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0.0
            } else if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                u64::from_str_radix(hex, 16).map(|n| n as f64).unwrap_or(f64::NAN)
            } else if t.eq_ignore_ascii_case("infinity") || t == "+Infinity" {
                if t == "Infinity" || t == "+Infinity" {
                    f64::INFINITY
                } else {
                    f64::NAN
                }
            } else if t == "-Infinity" {
                f64::NEG_INFINITY
            } else if t.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) {
                t.parse::<f64>().unwrap_or(f64::NAN)
            } else {
                f64::NAN
            }
        }
        Value::Array(_) => js_number(&Value::String(js_string(value))),
        Value::Object(_) => f64::NAN,
    }
}

// --- the result -------------------------------------------------------------

/// The library's response size: the length of `JSON.stringify(result)` in
/// UTF-16 code units (not bytes). `None` (JavaScript `undefined`) is 0.
/// serde_json and `JSON.stringify` escape strings alike; they differ on
/// non-integral float rendering only in rare cases (exponents).
pub fn response_size(result: Option<&Value>) -> usize {
    match result {
        None => 0,
        Some(value) => serde_json::to_string(value).map(|s| s.encode_utf16().count()).unwrap_or(0),
    }
}

/// The size check (after the serialisability check): larger than the limit
/// is `response_size_exceeded`; equal is allowed.
pub fn check_response_size(size: usize, limit: &ResponseLimit) -> Option<ExtensionError> {
    ((size as f64) > limit.limit).then(|| response_size_exceeded(limit))
}

// --- stored stacks ---------------------------------------------------------

/// Default call time limit of a stack (the Express host's own server timeout
/// is 315 s; integrator.io gives up on a hook after 300 s).
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 300;
/// Default number of calls of one stack served at once (each by its own warm
/// process); more wait, bounded, then get 503.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 8;
/// Upper bounds of the per-stack settings.
pub const MAX_TIMEOUT_SECONDS: u32 = 3600;
pub const MAX_CONCURRENCY: u32 = 64;

/// One environment entry a stack's module reads from `process.env`. An
/// encrypted entry's value is sealed and never shown (`value` is `None` when
/// read back).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StackEnv {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub encrypted: bool,
}

/// Values may be secrets: a debug print shows the name only.
impl std::fmt::Debug for StackEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackEnv").field("name", &self.name).field("encrypted", &self.encrypted).finish_non_exhaustive()
    }
}

/// A stack and its current version, as listed and shown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Stack {
    pub name: String,
    /// The version calls are served by (the latest upload).
    pub version: i64,
    /// `{"diy": FILE}` or `{"connectors": {ID: FILE}}` of that version.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Hex SHA-256 of that version's upload (its archive or file).
    pub sha256: String,
    pub timeout_seconds: u32,
    pub max_concurrency: u32,
    /// Encrypted entries without their value.
    pub env: Vec<StackEnv>,
    #[schema(value_type = String, format = DateTime)]
    pub token_created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// One stored version of a stack's module. Versions are immutable.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StackVersion {
    pub name: String,
    pub version: i64,
    pub sha256: String,
    #[schema(value_type = Object)]
    pub config: Value,
    /// `js` (one file), `zip` or `tgz`.
    pub format: String,
    /// Bytes of the upload.
    pub size: i64,
    /// What loading the module found: for each configured module file, the
    /// functions of each object (`{"index.js": {"hooks": ["preSavePage"], "": [...]}}`).
    #[schema(value_type = Object)]
    pub functions: Value,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// 200 with the function's result.
    Succeeded,
    /// 422: a validation error, the function's error, a bad result.
    Failed,
    /// 422 `timeout`: the process was killed.
    TimedOut,
}

impl CallOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            CallOutcome::Succeeded => "succeeded",
            CallOutcome::Failed => "failed",
            CallOutcome::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<CallOutcome> {
        Some(match s {
            "succeeded" => CallOutcome::Succeeded,
            "failed" => CallOutcome::Failed,
            "timed_out" => CallOutcome::TimedOut,
            _ => return None,
        })
    }
}

/// The record of one call of a stack function.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StackCall {
    pub id: i64,
    pub stack: String,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    pub duration_ms: i64,
    /// `function` as sent (empty when it was missing).
    pub function: String,
    /// `type` as sent (`hook`, `wrapper`, ...), `None` for a top-level call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `diy` or the `_connectorId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub outcome: CallOutcome,
    /// The first error's code when the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// `JSON.stringify(result).length` of a successful call.
    pub response_size: i64,
    /// The function's console output, spec 000's log format, secrets masked.
    /// Left out of listings; `GET .../calls/{id}` has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diy_config() -> StackConfig {
        StackConfig::Diy { module: "index.js".into() }
    }

    fn connector_config() -> StackConfig {
        check_configuration(&json!({"connectors": {
            "9ce44f88a25272b6d9cbb430ebbcfcf1": "a.js",
            "6a4b9e817fb9f522dbd012f642855a03": "b.js"
        }}))
        .unwrap()
    }

    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    type ConfigCase<'a> = (Value, Result<StackConfig, Pairs<'a>>);
    type ErrorCase<'a> = (&'a str, Value, &'a StackConfig, Pairs<'a>);

    fn pairs(errors: &[ExtensionError]) -> Vec<(&str, &str)> {
        errors.iter().map(|e| (e.code.as_str(), e.message.as_str())).collect()
    }

    fn opts() -> Value {
        json!({"key1": ["abc"], "key2": {"k": "v"}, "_importId": "56eae39e9a016a71a8a9c7e4",
               "bearerToken": "ott873f2beed978433997c42b4e5af05d9b"})
    }

    #[test]
    fn stack_configuration_table() {
        let cases: Vec<ConfigCase> = vec![
            // mocha: loadConfiguration(undefined) / createServer(undefined)
            (Value::Null, Err(vec![("missing_parameter", MSG_CONFIG_NOT_PROVIDED)])),
            (json!({}), Err(vec![("missing_parameter", MSG_CONFIG_NOT_PROVIDED)])),
            (json!(5), Err(vec![("missing_parameter", MSG_CONFIG_NOT_PROVIDED)])),
            // mocha: {a: 1}
            (json!({"a": 1}), Err(vec![(MISSING_REQUIRED_FIELD, MSG_CONFIG_DIY_OR_CONNECTORS)])),
            (json!({"diy": "", "connectors": null}), Err(vec![(MISSING_REQUIRED_FIELD, MSG_CONFIG_DIY_OR_CONNECTORS)])),
            // mocha: connectors {}
            (json!({"connectors": {}}), Err(vec![(INVALID_FIELD, MSG_CONFIG_NO_CONNECTORS)])),
            // lodash isEmpty(5) is true
            (json!({"connectors": 5}), Err(vec![(INVALID_FIELD, MSG_CONFIG_NO_CONNECTORS)])),
            // mocha: both set
            (
                json!({"diy": "index.js", "connectors": {"c1": "c.js"}}),
                Err(vec![("invalid_configuration", MSG_CONFIG_BOTH)]),
            ),
            // both-set wins over the empty connectors check (library order)
            (json!({"diy": "index.js", "connectors": {}}), Err(vec![("invalid_configuration", MSG_CONFIG_BOTH)])),
            (json!({"diy": "index.js"}), Ok(StackConfig::Diy { module: "index.js".into() })),
            // a falsy diy beside connectors is ignored, as by the library
            (
                json!({"diy": false, "connectors": {"c1": "c.js"}}),
                Ok(StackConfig::Connectors(BTreeMap::from([("c1".into(), "c.js".into())]))),
            ),
            // Junction's shape checks
            (
                json!({"diy": {"hooks": {}}}),
                Err(vec![(INVALID_FIELD, "The diy field must be the file name of the module.")]),
            ),
            (
                json!({"connectors": "abc"}),
                Err(vec![(
                    INVALID_FIELD,
                    "The connectors field must map each _connectorId to the file name of its module.",
                )]),
            ),
            (
                json!({"connectors": {"a": 1, "b": "b.js", "c": ""}}),
                Err(vec![
                    (INVALID_FIELD, "The module of connector a must be the file name of the module."),
                    (INVALID_FIELD, "The module of connector c must be the file name of the module."),
                ]),
            ),
        ];
        for (input, expected) in cases {
            let got = check_configuration(&input);
            match (&got, &expected) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{input}"),
                (Err(a), Err(b)) => assert_eq!(&pairs(a), b, "{input}"),
                _ => panic!("{input}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn stack_function_call_errors_table() {
        let diy = diy_config();
        let conn = connector_config();
        let cases: Vec<ErrorCase> = vec![
            (
                "mocha: no function",
                json!({"diy": true, "type": "hook", "options": opts()}),
                &diy,
                vec![(MISSING_REQUIRED_FIELD, MSG_MISSING_FUNCTION)],
            ),
            (
                "mocha: no options",
                json!({"diy": true, "type": "hook", "function": "doSomething"}),
                &diy,
                vec![(MISSING_REQUIRED_FIELD, MSG_MISSING_OPTIONS)],
            ),
            (
                "mocha: neither diy nor _connectorId",
                json!({"type": "hook", "function": "doSomething", "options": opts()}),
                &diy,
                vec![(MISSING_REQUIRED_FIELD, MSG_DIY_OR_CONNECTOR_ID)],
            ),
            (
                "mocha: diy requested, stack has connectors",
                json!({"type": "hook", "diy": true, "function": "doSomething", "options": opts()}),
                &conn,
                vec![(MISSING_REQUIRED_FIELD, MSG_DIY_DOESNT_EXIST)],
            ),
            (
                "mocha: connectorId without underscore",
                json!({"type": "installer", "diy": false,
                       "connectorId": "12ege39f7a016v72a8b9c79q",
                       "function": "doSomething", "options": opts()}),
                &conn,
                vec![(MISSING_REQUIRED_FIELD, MSG_DIY_OR_CONNECTOR_ID)],
            ),
            (
                "unknown _connectorId",
                json!({"_connectorId": "nope", "function": "f", "options": {}}),
                &conn,
                vec![(INVALID_FIELD, MSG_CONNECTOR_ID_DOESNT_EXIST)],
            ),
            (
                "_connectorId on a diy stack",
                json!({"_connectorId": "9ce44f88a25272b6d9cbb430ebbcfcf1", "function": "f",
                       "options": {}}),
                &diy,
                vec![(INVALID_FIELD, MSG_CONNECTOR_ID_DOESNT_EXIST)],
            ),
            (
                "function not a string",
                json!({"diy": true, "function": ["hooks", "f"], "options": {}}),
                &diy,
                vec![(INVALID_FIELD, MSG_FUNCTION_NOT_STRING)],
            ),
            (
                "function true is not a string",
                json!({"diy": true, "function": true, "options": {}}),
                &diy,
                vec![(INVALID_FIELD, MSG_FUNCTION_NOT_STRING)],
            ),
            (
                "falsy function and options count as missing",
                json!({"diy": true, "function": "", "options": 0}),
                &diy,
                vec![(MISSING_REQUIRED_FIELD, MSG_MISSING_FUNCTION), (MISSING_REQUIRED_FIELD, MSG_MISSING_OPTIONS)],
            ),
            (
                "everything wrong, in the library's order",
                json!({"function": 7, "options": null}),
                &diy,
                vec![
                    (MISSING_REQUIRED_FIELD, MSG_DIY_OR_CONNECTOR_ID),
                    (INVALID_FIELD, MSG_FUNCTION_NOT_STRING),
                    (MISSING_REQUIRED_FIELD, MSG_MISSING_OPTIONS),
                ],
            ),
            (
                "a body that is not an object",
                json!([1, 2]),
                &diy,
                vec![
                    (MISSING_REQUIRED_FIELD, MSG_DIY_OR_CONNECTOR_ID),
                    (MISSING_REQUIRED_FIELD, MSG_MISSING_FUNCTION),
                    (MISSING_REQUIRED_FIELD, MSG_MISSING_OPTIONS),
                ],
            ),
        ];
        for (name, body, config, expected) in cases {
            let errors = parse_function_call(&body, config).expect_err(name);
            assert_eq!(pairs(&errors), expected, "{name}");
        }
    }

    #[test]
    fn stack_function_call_accepted_table() {
        let diy = diy_config();
        let conn = connector_config();
        let cases: Vec<(Value, &StackConfig, Target, Option<Kind>, usize)> = vec![
            (
                json!({"diy": true, "type": "hook", "function": "doSomething",
                       "maxResponseSize": 2000, "options": opts()}),
                &diy,
                Target::Diy,
                Some(Kind::Hook),
                2000,
            ),
            // diy wins over _connectorId
            (
                json!({"diy": true, "_connectorId": "x", "function": "f", "options": {}}),
                &diy,
                Target::Diy,
                None,
                DEFAULT_MAX_RESPONSE_SIZE,
            ),
            // mocha: a connector's hook (instance module)
            (
                json!({"type": "hook", "_connectorId": "6a4b9e817fb9f522dbd012f642855a03",
                       "function": "doSomething", "options": opts()}),
                &conn,
                Target::Connector("6a4b9e817fb9f522dbd012f642855a03".into()),
                Some(Kind::Hook),
                DEFAULT_MAX_RESPONSE_SIZE,
            ),
            // falsy type means top level; falsy maxResponseSize means default
            (
                json!({"diy": 1, "type": "", "function": "f", "options": [],
                       "maxResponseSize": 0}),
                &diy,
                Target::Diy,
                None,
                DEFAULT_MAX_RESPONSE_SIZE,
            ),
            (
                json!({"diy": true, "type": "installer", "function": "f", "options": "x",
                       "maxResponseSize": "2"}),
                &diy,
                Target::Diy,
                Some(Kind::Installer),
                2,
            ),
            (
                json!({"diy": true, "type": 5, "function": "f", "options": {},
                       "maxResponseSize": 2.0}),
                &diy,
                Target::Diy,
                Some(Kind::Other("5".into())),
                2,
            ),
        ];
        for (body, config, target, kind, max) in cases {
            let call = parse_function_call(&body, config).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(call.target, target, "{body}");
            assert_eq!(call.kind, kind, "{body}");
            assert_eq!(call.max_response_size.limit, max as f64, "{body}");
            assert_eq!(call.function, body["function"].as_str().unwrap());
            assert_eq!(call.options, body["options"]);
        }
    }

    #[test]
    fn stack_kind_object_names() {
        let table = [
            ("hook", "hooks"),
            ("wrapper", "wrappers"),
            ("setting", "settings"),
            ("utility", "utilities"),
            ("installer", "installer"),
            ("uninstaller", "uninstaller"),
            ("hooks", "hooks"),
            ("anything", "anything"),
        ];
        for (type_, object) in table {
            let kind = Kind::from_type(type_);
            assert_eq!(kind.object_name(), object);
            assert_eq!(kind.as_type(), type_);
        }
    }

    #[test]
    fn stack_error_messages() {
        let e = object_not_found(&Kind::Hook);
        assert_eq!(e.code, "object_not_found");
        assert_eq!(e.message, "The object hook doesn't exist in the module.");
        assert_eq!(object_not_found(&Kind::Other("5".into())).message, "The object 5 doesn't exist in the module.");
        // mocha: maxResponseSize 2, echo ['abc','abc']
        let size = response_size(Some(&json!(["abc", "abc"])));
        assert_eq!(size, 13);
        let two = ResponseLimit { limit: 2.0, shown: "2".into() };
        let e = check_response_size(size, &two).unwrap();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "response_size_exceeded",
                   "message": "response stream exceeded limit of 2 bytes."})
        );
        assert_eq!(check_response_size(13, &ResponseLimit { limit: 13.0, shown: "13".into() }), None);
        // JavaScript's comparison: negative refuses all, NaN never limits.
        let limit = |v: Value| max_response_size(Some(&v));
        assert_eq!(
            check_response_size(0, &limit(json!(-1))).unwrap().message,
            "response stream exceeded limit of -1 bytes."
        );
        assert_eq!(check_response_size(usize::MAX / 2, &limit(json!("abc"))), None);
        assert_eq!(
            check_response_size(3, &limit(json!("2"))).unwrap().message,
            "response stream exceeded limit of 2 bytes."
        );
        assert_eq!(limit(json!(0)), ResponseLimit::default_limit());
        assert_eq!(
            serde_json::to_value(invalid_extension_response()).unwrap(),
            json!({"code": "invalid_extension_response",
                   "message": "Extension response is not serializable."})
        );
        assert_eq!(invalid_function().code, "invalid_function");
        assert_eq!(
            invalid_function().message,
            "The function passed in the extension options doesn't map to a function."
        );
    }

    #[test]
    fn stack_response_size_like_json_stringify() {
        // the library's own sizeOf table (test/test.util.js)
        let table = [
            (json!({"1": {"depot_id": null, "hierarchy_node_id": null}}), 48),
            (Value::Null, 4),
            (json!(5), 1),
            (json!({"abc": "def"}), 13),
            (json!(true), 4),
            (json!({"a": 1, "b": 2, "c": {"d": 4}}), 25),
            // UTF-16 code units, not bytes: "é" is 1, "😀" is 2
            (json!("é"), 3),
            (json!("😀"), 4),
        ];
        for (value, size) in table {
            assert_eq!(response_size(Some(&value)), size, "{value}");
        }
        assert_eq!(response_size(None), 0);
    }

    #[test]
    fn stack_js_string_coercion() {
        assert_eq!(js_string(&json!(12)), "12");
        assert_eq!(js_string(&json!(1.0)), "1");
        assert_eq!(js_string(&json!(true)), "true");
        assert_eq!(js_string(&json!(["a", null, 1])), "a,,1");
        assert_eq!(js_string(&json!({"a": 1})), "[object Object]");
    }
}
