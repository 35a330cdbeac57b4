//! Spec 003: Extensible Data Sources (XDS). A tool registers a *schema*
//! (which fields its activity messages carry and how to show them), then
//! sends *activity messages*; messages with the same `remote_id` are one
//! activity, each message one of its sub-events.
//!
//! This module holds the pure rules: schema validation, activity
//! validation against a registered schema version, merging a message into
//! an activity's current values, and rendering values for people (HTML
//! with every character escaped, links only where Junction made them).
//! Every violation of a message is reported at once, as for spec 002.
//!
//! Field classes (spec 003): the four *mandatory* fields are in every
//! schema and every message; *stock* fields are defined by the API and so
//! are part of every schema whether or not its `fields` lists them;
//! *custom* fields are the schema's own, listed in `fields`. A message may
//! also carry custom fields its schema version does not declare ("truly
//! arbitrary", spec 003): they are checked as custom values, stored, listed
//! as undeclared, and — like hidden fields — never rendered.

use std::borrow::Cow;
use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::document::{kind, path, quoted, unknown_keys, MAX_KEY};
use crate::validation::{Invalid, Violation, Violations};

/// The only version of the XDS schema and activity APIs.
pub const API_VERSION: &str = "1";
/// In every schema's `fields` and `required`, and in every message.
pub const MANDATORY_FIELDS: [&str; 4] = ["schema_id", "schema_version", "event_time", "remote_id"];
/// Optional fields with a meaning of their own (spec 003), part of every
/// schema.
pub const STOCK_FIELDS: [&str; 7] =
    ["associated_remote_id", "created_by", "summary", "description", "status_name", "status_type", "link_to"];
pub const STATUS_TYPES: [&str; 3] = ["open", "success", "fail"];
pub const DEFAULT_LINK_LABEL: &str = "See More";
/// Stock fields whose (text) value may be parsed for references and URLs.
pub const PARSEABLE_STOCK_FIELDS: [&str; 4] = ["summary", "description", "created_by", "status_name"];
/// `custom_data.name` names the schema (spec 003's example sends it); no
/// schema may declare a field of that name.
pub const RESERVED_FIELD: &str = "name";
/// Placeholders replaced in rendered text and links: Junction's names and
/// spec 003's TeamForge ones.
pub const BASE_URL_PLACEHOLDERS: [&str; 2] = ["%JUNCTION_BASE_URL%", "%CTF_BASE_URL%"];
pub const GO_URL_PLACEHOLDERS: [&str; 2] = ["%JUNCTION_GO_URL%", "%CTF_GO_URL%"];

/// Most fields a schema declares.
pub const MAX_FIELDS: usize = 200;
pub const MAX_SCHEMA_ID: usize = 128;
pub const MAX_VERSION: i64 = i32::MAX as i64;
pub const MAX_FIELD_NAME: usize = 64;
const MAX_SCHEMA_NAME: usize = 200;
const MAX_REMOTE_ID: usize = 256;
/// `created_by`, `status_name`, associated ids, link labels.
const MAX_SHORT: usize = 1024;
/// `summary`, `description` and parsed text, in characters.
const MAX_TEXT: usize = 65_536;
/// A custom value, as compact JSON.
const MAX_VALUE_BYTES: usize = 65_536;
/// Nesting of a custom value (objects and arrays).
const MAX_DEPTH: usize = 16;
const MAX_URL: usize = 2048;
const MAX_ASSOCIATED: usize = 100;
/// Keys of one message's `custom_data`.
const MAX_DATA_KEYS: usize = 256;

const SCHEMA_MESSAGE_KEYS: [&str; 3] = ["api_version", "source_association_key", "custom_schema"];
const SCHEMA_KEYS: [&str; 10] = [
    "name",
    "schema_id",
    "schema_version",
    "event_time",
    "fields",
    "required",
    "important",
    "parse",
    "link_to",
    "hidden",
];
const ACTIVITY_MESSAGE_KEYS: [&str; 3] = ["api_version", "source_association_key", "custom_data"];

/// The two kinds of XDS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Schema,
    Activity,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Schema => "schema",
            MessageKind::Activity => "activity",
        }
    }
}

/// A registered schema version (spec 003's `custom_schema`), normalised:
/// the optional lists are present (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Schema {
    pub name: String,
    pub schema_id: String,
    pub schema_version: i64,
    /// When the schema was submitted (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    pub event_time: Timestamp,
    /// The mandatory fields and every custom field (stock fields may be
    /// listed too).
    pub fields: Vec<String>,
    pub required: Vec<String>,
    /// A change of one of these makes an activity-stream entry.
    pub important: Vec<String>,
    /// Text fields whose references (`[artf12345]`) and URLs become links.
    pub parse: Vec<String>,
    /// Fields whose value is a link: a URL or `[label, url]`.
    pub link_to: Vec<String>,
    /// Custom fields stored and returned by the API but never rendered.
    pub hidden: Vec<String>,
}

/// How a field of a schema is checked and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Mandatory,
    Link,
    Parse,
    Stock,
    Custom,
}

impl Schema {
    /// Declared: listed in `fields`, or a stock field.
    pub fn declares(&self, field: &str) -> bool {
        STOCK_FIELDS.contains(&field) || self.fields.iter().any(|f| f == field)
    }

    fn kind_of(&self, field: &str) -> Option<FieldKind> {
        if MANDATORY_FIELDS.contains(&field) {
            Some(FieldKind::Mandatory)
        } else if !self.declares(field) {
            None
        } else if field == "link_to" || self.link_to.iter().any(|f| f == field) {
            Some(FieldKind::Link)
        } else if self.parse.iter().any(|f| f == field) {
            Some(FieldKind::Parse)
        } else if STOCK_FIELDS.contains(&field) {
            Some(FieldKind::Stock)
        } else {
            Some(FieldKind::Custom)
        }
    }

    pub fn is_hidden(&self, field: &str) -> bool {
        self.hidden.iter().any(|f| f == field)
    }

    /// The keys of `fields` (an activity's or a message's values) this
    /// schema version does not declare, in their order.
    pub fn undeclared(&self, fields: &Map<String, Value>) -> Vec<String> {
        fields.keys().filter(|k| self.kind_of(k).is_none()).cloned().collect()
    }
}

/// A schema registration: `POST /api/1/schemas`.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaMessage {
    pub source_association_key: Option<String>,
    pub schema: Schema,
}

impl SchemaMessage {
    pub fn parse(body: &Value) -> Result<SchemaMessage, Invalid> {
        let Value::Object(obj) = body else {
            return Err(Invalid::one(
                "body",
                "type",
                format!("a schema message must be a JSON object, not {}", kind(body)),
            ));
        };
        let mut v = Violations::default();
        unknown_keys(obj, &SCHEMA_MESSAGE_KEYS, "", "a schema message", &mut v);
        api_version(obj, &mut v);
        let key = association_key(obj, false, &mut v);
        let schema = match obj.get("custom_schema") {
            Some(Value::Object(s)) => parse_schema(s, &mut v),
            None => {
                v.push("custom_schema", "required", "custom_schema is required");
                None
            }
            Some(other) => {
                v.push("custom_schema", "type", format!("must be an object, not {}", kind(other)));
                None
            }
        };
        match schema {
            Some(schema) if v.is_empty() => Ok(SchemaMessage { source_association_key: key, schema }),
            _ => Err(v.finish(()).err().unwrap_or_else(|| Invalid::one("custom_schema", "type", "not a schema"))),
        }
    }
}

/// What a refused message says about itself, for the rejection record:
/// its schema id and version when they are well-formed.
pub fn message_hints(body: &Value) -> (Option<String>, Option<i64>) {
    let inner = body.get("custom_schema").or_else(|| body.get("custom_data"));
    let id = inner
        .and_then(|o| o.get("schema_id"))
        .and_then(Value::as_str)
        .filter(|s| schema_id_error(s).is_none())
        .map(str::to_string);
    let version =
        inner.and_then(|o| o.get("schema_version")).and_then(Value::as_i64).filter(|n| (1..=MAX_VERSION).contains(n));
    (id, version)
}

fn parse_schema(s: &Map<String, Value>, v: &mut Violations) -> Option<Schema> {
    const AT: &str = "custom_schema";
    unknown_keys(s, &SCHEMA_KEYS, AT, "a schema (spec 003)", v);
    let name = match s.get("name") {
        Some(Value::String(n)) if n.trim().is_empty() => {
            v.push("custom_schema.name", "required", "the schema needs a name");
            None
        }
        Some(Value::String(n)) if n.chars().count() > MAX_SCHEMA_NAME || n.chars().any(char::is_control) => {
            v.push(
                "custom_schema.name",
                "text",
                format!("must be at most {MAX_SCHEMA_NAME} characters without control characters"),
            );
            None
        }
        Some(Value::String(n)) => Some(n.clone()),
        None => {
            v.push("custom_schema.name", "required", "the schema needs a name");
            None
        }
        Some(other) => {
            v.push("custom_schema.name", "type", format!("must be a string, not {}", kind(other)));
            None
        }
    };
    let schema_id = schema_id(s.get("schema_id"), "custom_schema.schema_id", v);
    let schema_version = schema_version(s.get("schema_version"), "custom_schema.schema_version", v);
    let event_time = event_time(s.get("event_time"), "custom_schema.event_time", v);

    let fields = name_list(s, "fields", AT, true, v);
    if let Some(fields) = &fields {
        for (i, f) in fields {
            if let Err(e) = check_field_name(&format!("{AT}.fields[{i}]"), f) {
                v.add(e);
            } else if f == RESERVED_FIELD {
                v.push(
                    format!("{AT}.fields[{i}]"),
                    "reserved",
                    "\"name\" names the schema in a message and cannot be a field",
                );
            }
        }
        for m in MANDATORY_FIELDS {
            if !fields.iter().any(|(_, f)| f == m) {
                v.push(format!("{AT}.fields"), "mandatory", format!("must list the mandatory field {m:?}"));
            }
        }
    }
    let listed: BTreeSet<&str> = fields.iter().flatten().map(|(_, f)| f.as_str()).collect();
    let declared = |f: &str| listed.contains(f) || STOCK_FIELDS.contains(&f);
    let is_custom = |f: &str| !MANDATORY_FIELDS.contains(&f) && !STOCK_FIELDS.contains(&f);

    let required = name_list(s, "required", AT, true, v);
    let important = name_list(s, "important", AT, false, v);
    let parse = name_list(s, "parse", AT, false, v);
    let link_to = name_list(s, "link_to", AT, false, v);
    let hidden = name_list(s, "hidden", AT, false, v);
    // Lists of field names must name declared fields; `fields` being
    // unusable already says why, so nothing more is reported then.
    if fields.is_some() {
        for (list, entries) in [
            ("required", &required),
            ("important", &important),
            ("parse", &parse),
            ("link_to", &link_to),
            ("hidden", &hidden),
        ] {
            for (i, f) in entries.iter().flatten() {
                if !declared(f) {
                    v.push(
                        format!("{AT}.{list}[{i}]"),
                        "undeclared",
                        format!("{} is not a field of this schema: list it in fields", quoted(f)),
                    );
                }
            }
        }
    }
    if let Some(required) = &required {
        for m in MANDATORY_FIELDS {
            if !required.iter().any(|(_, f)| f == m) {
                v.push(format!("{AT}.required"), "mandatory", format!("must list the mandatory field {m:?}"));
            }
        }
    }
    // Only rightly hidden fields make the other lists' entries wrong.
    let hidden_names: BTreeSet<&str> =
        hidden.iter().flatten().map(|(_, f)| f.as_str()).filter(|f| declared(f) && is_custom(f)).collect();
    for (i, f) in hidden.iter().flatten() {
        if declared(f) && !is_custom(f) {
            v.push(
                format!("{AT}.hidden[{i}]"),
                "custom_only",
                format!("only custom fields can be hidden; {} is a mandatory or stock field", quoted(f)),
            );
        }
    }
    for (i, f) in important.iter().flatten() {
        if hidden_names.contains(f.as_str()) {
            v.push(
                format!("{AT}.important[{i}]"),
                "hidden",
                "a hidden field is never shown, so it cannot be important",
            );
        }
    }
    let link_names: BTreeSet<&str> = link_to.iter().flatten().map(|(_, f)| f.as_str()).collect();
    for (i, f) in parse.iter().flatten() {
        let at = format!("{AT}.parse[{i}]");
        if !declared(f) {
            continue;
        }
        if !(is_custom(f) || PARSEABLE_STOCK_FIELDS.contains(&f.as_str())) {
            v.push(
                &at,
                "parse_field",
                format!("only text fields can be parsed: custom fields and summary, description, created_by, status_name; not {}", quoted(f)),
            );
        } else if hidden_names.contains(f.as_str()) {
            v.push(&at, "hidden", "a hidden field is never shown, so it cannot be parsed");
        } else if link_names.contains(f.as_str()) {
            v.push(&at, "conflict", "a field is either parsed text or a link, not both");
        }
    }
    for (i, f) in link_to.iter().flatten() {
        let at = format!("{AT}.link_to[{i}]");
        if !declared(f) {
            continue;
        }
        if !(is_custom(f) || f == "link_to") {
            v.push(&at, "link_field", format!("only custom fields (or link_to) can be links, not {}", quoted(f)));
        } else if hidden_names.contains(f.as_str()) {
            v.push(&at, "hidden", "a hidden field is never shown, so it cannot be a link");
        }
    }
    let names = |list: Option<Vec<(usize, String)>>| list.unwrap_or_default().into_iter().map(|(_, f)| f).collect();
    match (name, schema_id, schema_version, event_time, fields, required) {
        (Some(name), Some(schema_id), Some(schema_version), Some(event_time), Some(fields), Some(required))
            if v.is_empty() =>
        {
            Some(Schema {
                name,
                schema_id,
                schema_version,
                event_time,
                fields: names(Some(fields)),
                required: names(Some(required)),
                important: names(important),
                parse: names(parse),
                link_to: names(link_to),
                hidden: names(hidden),
            })
        }
        _ => None,
    }
}

/// A list of field names: an array of distinct strings. Absent or null is
/// empty, or `None` and a violation when `required`; a value that is not a
/// list (or too long a list) is `None`.
fn name_list(
    obj: &Map<String, Value>,
    key: &str,
    at: &str,
    required: bool,
    v: &mut Violations,
) -> Option<Vec<(usize, String)>> {
    let field = format!("{at}.{key}");
    let items = match obj.get(key) {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            if required {
                v.push(&field, "required", format!("{key} is required: a list of field names"));
                return None;
            }
            return Some(Vec::new());
        }
        Some(other) => {
            v.push(&field, "type", format!("must be a list of field names, not {}", kind(other)));
            return None;
        }
    };
    if items.len() > MAX_FIELDS {
        v.push(&field, "max_items", format!("at most {MAX_FIELDS} field names, not {}", items.len()));
        return None;
    }
    // Entries that are fine are kept even when others are not, so the
    // rules over the list still report what else is wrong.
    let mut out: Vec<(usize, String)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if out.iter().any(|(_, f)| f == s) => {
                v.push(format!("{field}[{i}]"), "duplicate", format!("{} is listed twice", quoted(s)))
            }
            Value::String(s) if s.len() > MAX_FIELD_NAME * 4 || s.contains('\0') => {
                v.push(format!("{field}[{i}]"), "field_name", "not a field name")
            }
            Value::String(s) => out.push((i, s.clone())),
            other => v.push(format!("{field}[{i}]"), "type", format!("must be a field name, not {}", kind(other))),
        }
    }
    Some(out)
}

/// Field names: 1-64 of `A-Z a-z 0-9 _ - .`, starting with a letter or `_`.
pub fn check_field_name(field: &str, name: &str) -> Result<(), Violation> {
    let first = name.chars().next();
    let ok = name.len() <= MAX_FIELD_NAME
        && first.is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Violation::new(
            field,
            "field_name",
            format!(
                "a field name is 1-{MAX_FIELD_NAME} letters, digits, '_', '-' or '.', starting with a letter or '_'"
            ),
        ))
    }
}

/// Why `id` is not a schema id: a UUID or other run of ASCII letters,
/// digits and dashes (spec 003), at most 128 long.
pub fn schema_id_error(id: &str) -> Option<String> {
    if id.is_empty() {
        Some("must not be empty".into())
    } else if id.len() > MAX_SCHEMA_ID {
        Some(format!("must be at most {MAX_SCHEMA_ID} characters"))
    } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Some("must be a UUID or letters, digits and dashes only".into())
    } else {
        None
    }
}

fn schema_id(value: Option<&Value>, field: &str, v: &mut Violations) -> Option<String> {
    match value {
        Some(Value::String(id)) => match schema_id_error(id) {
            None => Some(id.clone()),
            Some(why) => {
                v.push(field, "schema_id", why);
                None
            }
        },
        None => {
            v.push(field, "required", "schema_id is required");
            None
        }
        Some(other) => {
            v.push(field, "type", format!("must be a string (a UUID), not {}", kind(other)));
            None
        }
    }
}

fn schema_version(value: Option<&Value>, field: &str, v: &mut Violations) -> Option<i64> {
    match value {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => match n.as_i64() {
            Some(x) if (1..=MAX_VERSION).contains(&x) => Some(x),
            _ => {
                v.push(field, "range", format!("must be an integer from 1 to {MAX_VERSION}"));
                None
            }
        },
        Some(Value::Number(n)) => {
            v.push(field, "type", format!("must be a whole number, not {n}"));
            None
        }
        None => {
            v.push(field, "required", "schema_version is required");
            None
        }
        Some(other) => {
            v.push(field, "type", format!("must be an integer, not {}", kind(other)));
            None
        }
    }
}

fn event_time(value: Option<&Value>, field: &str, v: &mut Violations) -> Option<Timestamp> {
    match value {
        Some(Value::String(s)) => match utc_time(s) {
            Some(t) => Some(t),
            None => {
                v.push(field, "rfc3339_utc", "must be an RFC 3339 time in UTC, e.g. 2015-02-02T17:15:32.320Z");
                None
            }
        },
        None => {
            v.push(field, "required", "event_time is required");
            None
        }
        Some(other) => {
            v.push(field, "type", format!("must be an RFC 3339 string, not {}", kind(other)));
            None
        }
    }
}

/// An RFC 3339 time in UTC: `YYYY-MM-DDTHH:MM:SS[.fraction]` and `Z` (or
/// `+00:00`).
pub fn utc_time(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        rest = &frac[n..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00") {
        return None;
    }
    s.parse::<Timestamp>().ok()
}

fn api_version(obj: &Map<String, Value>, v: &mut Violations) {
    match obj.get("api_version") {
        Some(Value::String(s)) if s == API_VERSION => {}
        Some(Value::String(_)) => v.push("api_version", "one_of", "must be \"1\", the only XDS API version"),
        None => v.push("api_version", "required", "api_version is required (\"1\")"),
        Some(other) => v.push("api_version", "type", format!("must be the string \"1\", not {}", kind(other))),
    }
}

fn association_key(obj: &Map<String, Value>, required: bool, v: &mut Violations) -> Option<String> {
    const F: &str = "source_association_key";
    match obj.get(F) {
        None | Some(Value::Null) if required => {
            v.push(F, "required", "the source_association_key of an XDS source is required");
            None
        }
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KEY && !k.chars().any(char::is_control) => {
            Some(k.clone())
        }
        Some(Value::String(k)) if k.is_empty() => {
            v.push(F, "required", "must not be empty");
            None
        }
        Some(Value::String(_)) => {
            v.push(F, "unknown", "no XDS source has this association key");
            None
        }
        Some(other) => {
            v.push(F, "type", format!("must be a string, not {}", kind(other)));
            None
        }
    }
}

/// The base URL Junction is reached at, and its go-URL (`BASE/go`), for
/// placeholders and reference links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    pub base: String,
    pub go: String,
}

impl Urls {
    pub fn new(base: &str) -> Urls {
        let base = base.trim_end_matches('/').to_string();
        Urls { go: format!("{base}/go"), base }
    }

    /// `%JUNCTION_BASE_URL%` / `%CTF_BASE_URL%` and `%JUNCTION_GO_URL%` /
    /// `%CTF_GO_URL%` replaced.
    pub fn interpolate<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !text.contains('%') {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for p in BASE_URL_PLACEHOLDERS {
            out = out.replace(p, &self.base);
        }
        for p in GO_URL_PLACEHOLDERS {
            out = out.replace(p, &self.go);
        }
        Cow::Owned(out)
    }
}

/// A validated activity message, as the store aggregates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub schema_id: String,
    pub schema_version: i64,
    pub event_time: Timestamp,
    /// Integers are kept as their decimal text, so `1234` and `"1234"` are
    /// the same activity.
    pub remote_id: String,
    /// Every other key of `custom_data` (but `name`), as sent, undeclared
    /// ones included.
    pub fields: Map<String, Value>,
}

/// The first reading of an activity message: what is needed to find its
/// source and schema, and the violations found so far. The caller adds
/// its own (unknown source, schema or version) with [`refuse`], then
/// [`validate`] checks the fields against the schema.
///
/// [`refuse`]: ActivityEnvelope::refuse
/// [`validate`]: ActivityEnvelope::validate
#[derive(Debug)]
pub struct ActivityEnvelope {
    pub source_association_key: Option<String>,
    pub schema_id: Option<String>,
    pub schema_version: Option<i64>,
    event_time: Option<Timestamp>,
    remote_id: Option<String>,
    data: Map<String, Value>,
    violations: Violations,
}

impl ActivityEnvelope {
    pub fn read(body: &Value) -> ActivityEnvelope {
        let mut v = Violations::default();
        let mut env = ActivityEnvelope {
            source_association_key: None,
            schema_id: None,
            schema_version: None,
            event_time: None,
            remote_id: None,
            data: Map::new(),
            violations: Violations::default(),
        };
        let Value::Object(obj) = body else {
            v.push("body", "type", format!("an activity message must be a JSON object, not {}", kind(body)));
            env.violations = v;
            return env;
        };
        unknown_keys(obj, &ACTIVITY_MESSAGE_KEYS, "", "an activity message", &mut v);
        api_version(obj, &mut v);
        env.source_association_key = association_key(obj, true, &mut v);
        match obj.get("custom_data") {
            Some(Value::Object(data)) => {
                if data.len() > MAX_DATA_KEYS {
                    v.push("custom_data", "max_items", format!("at most {MAX_DATA_KEYS} fields, not {}", data.len()));
                } else {
                    env.schema_id = schema_id(data.get("schema_id"), "custom_data.schema_id", &mut v);
                    env.schema_version =
                        schema_version(data.get("schema_version"), "custom_data.schema_version", &mut v);
                    env.event_time = event_time(data.get("event_time"), "custom_data.event_time", &mut v);
                    env.remote_id = remote_id(data.get("remote_id"), &mut v);
                    env.data = data.clone();
                }
            }
            None => v.push("custom_data", "required", "custom_data is required"),
            Some(other) => v.push("custom_data", "type", format!("must be an object, not {}", kind(other))),
        }
        env.violations = v;
        env
    }

    /// Adds a violation found by the caller.
    pub fn refuse(&mut self, violation: Violation) {
        self.violations.add(violation);
    }

    /// Checks every field against `schema` (the registered version the
    /// message names; `None` when it could not be found, and the caller
    /// said why with [`refuse`](Self::refuse)).
    pub fn validate(self, schema: Option<&Schema>, urls: &Urls) -> Result<Activity, Invalid> {
        let ActivityEnvelope { schema_id, schema_version, event_time, remote_id, data, mut violations, .. } = self;
        let v = &mut violations;
        let mut fields = Map::new();
        if let Some(schema) = schema {
            for (key, value) in &data {
                let at = path("custom_data", key);
                if key == RESERVED_FIELD {
                    match value {
                        Value::String(n) if *n == schema.name => {}
                        _ => v.push(&at, "schema_name", format!("must be the schema's name, {}", quoted(&schema.name))),
                    }
                    continue;
                }
                let Some(field_kind) = schema.kind_of(key) else {
                    // Undeclared: kept as a custom value (never rendered),
                    // under a name a later version could declare.
                    let before = v.len();
                    if let Err(e) = check_field_name(&at, key) {
                        v.add(e);
                    } else {
                        custom(&at, value, v);
                    }
                    if v.len() == before {
                        fields.insert(key.clone(), value.clone());
                    }
                    continue;
                };
                if field_kind == FieldKind::Mandatory {
                    continue;
                }
                if schema.required.iter().any(|r| r == key) && value.is_null() {
                    continue; // reported as missing below
                }
                if check_value(&at, key, field_kind, value, urls, v) {
                    fields.insert(key.clone(), value.clone());
                }
            }
            for r in &schema.required {
                if !MANDATORY_FIELDS.contains(&r.as_str()) && data.get(r).is_none_or(Value::is_null) {
                    v.push(path("custom_data", r), "required", format!("{r} is required by the schema"));
                }
            }
        } else if v.is_empty() {
            v.push("custom_data.schema_id", "unknown_schema", "no such schema");
        }
        match (schema_id, schema_version, event_time, remote_id) {
            (Some(schema_id), Some(schema_version), Some(event_time), Some(remote_id)) if v.is_empty() => {
                Ok(Activity { schema_id, schema_version, event_time, remote_id, fields })
            }
            _ => Err(violations
                .finish(())
                .err()
                .unwrap_or_else(|| Invalid::one("custom_data", "type", "not an activity"))),
        }
    }
}

fn remote_id(value: Option<&Value>, v: &mut Violations) -> Option<String> {
    const F: &str = "custom_data.remote_id";
    match value {
        Some(Value::String(s)) if s.trim().is_empty() => {
            v.push(F, "required", "remote_id must not be empty");
            None
        }
        Some(Value::String(s)) if s.chars().count() > MAX_REMOTE_ID || s.chars().any(char::is_control) => {
            v.push(F, "text", format!("must be at most {MAX_REMOTE_ID} characters without control characters"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        None => {
            v.push(F, "required", "remote_id is required");
            None
        }
        Some(other) => {
            v.push(F, "type", format!("must be a string (or a whole number), not {}", kind(other)));
            None
        }
    }
}

/// Checks one declared field's value; true when it is fine.
fn check_value(at: &str, key: &str, field_kind: FieldKind, value: &Value, urls: &Urls, v: &mut Violations) -> bool {
    let before = v.len();
    if value.is_null() {
        return true; // clears the field
    }
    match field_kind {
        FieldKind::Mandatory => {}
        FieldKind::Link => {
            if let Err((field, rule, msg)) = link(key, value, urls) {
                v.push(if field.is_empty() { at.to_string() } else { format!("{at}{field}") }, rule, msg);
            }
        }
        FieldKind::Parse => text(at, value, MAX_TEXT, true, v),
        FieldKind::Stock => match key {
            "summary" | "description" => text(at, value, MAX_TEXT, true, v),
            "created_by" | "status_name" => text(at, value, MAX_SHORT, false, v),
            "status_type" => match value {
                Value::String(s) if STATUS_TYPES.contains(&s.as_str()) => {}
                Value::String(_) => v.push(at, "one_of", "must be one of \"open\", \"success\", \"fail\""),
                other => v.push(at, "type", format!("must be a string, not {}", kind(other))),
            },
            "associated_remote_id" => match value {
                Value::Array(ids) if ids.is_empty() || ids.len() > MAX_ASSOCIATED => {
                    v.push(at, "max_items", format!("a list holds 1 to {MAX_ASSOCIATED} ids"))
                }
                Value::Array(ids) => {
                    for (i, id) in ids.iter().enumerate() {
                        text(&format!("{at}[{i}]"), id, MAX_SHORT, false, v);
                    }
                }
                single => text(at, single, MAX_SHORT, false, v),
            },
            _ => {}
        },
        FieldKind::Custom => custom(at, value, v),
    }
    v.len() == before
}

/// A string of at most `max` characters without NUL (and, unless
/// `multiline`, without any control character).
fn text(at: &str, value: &Value, max: usize, multiline: bool, v: &mut Violations) {
    match value {
        Value::String(s) => {
            let bad =
                |c: char| if multiline { c.is_control() && !matches!(c, '\n' | '\r' | '\t') } else { c.is_control() };
            if s.chars().count() > max || s.chars().any(bad) {
                let allowed =
                    if multiline { "control characters other than newlines and tabs" } else { "control characters" };
                v.push(at, "text", format!("must be at most {max} characters, without {allowed}"));
            }
        }
        other => v.push(at, "type", format!("must be a string, not {}", kind(other))),
    }
}

/// Any JSON value, within size and nesting caps, without NUL characters.
fn custom(at: &str, value: &Value, v: &mut Violations) {
    fn walk(value: &Value, depth: usize) -> Result<(), &'static str> {
        if depth > MAX_DEPTH {
            return Err("depth");
        }
        match value {
            Value::String(s) if s.contains('\0') => Err("text"),
            Value::Array(items) => items.iter().try_for_each(|x| walk(x, depth + 1)),
            Value::Object(map) => {
                map.iter().try_for_each(|(k, x)| if k.contains('\0') { Err("text") } else { walk(x, depth + 1) })
            }
            _ => Ok(()),
        }
    }
    match walk(value, 0) {
        Err("depth") => v.push(at, "depth", format!("must nest at most {MAX_DEPTH} levels")),
        Err(_) => v.push(at, "text", "must not contain NUL characters"),
        Ok(()) => {
            let size = serde_json::to_vec(value).map_or(usize::MAX, |b| b.len());
            if size > MAX_VALUE_BYTES {
                v.push(at, "size", format!("must be at most {MAX_VALUE_BYTES} bytes as JSON"));
            }
        }
    }
}

/// A link as the API shows it: `{label, url}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Link {
    /// The field the link came from.
    pub field: String,
    /// Plain text (not HTML).
    pub label: String,
    /// An absolute `http`/`https` URL, placeholders replaced.
    pub url: String,
}

/// A link field's value: a URL, `[url]` or `[label, url]`. Errors name the
/// sub-path (`[1]`), the rule and a message.
fn link(field: &str, value: &Value, urls: &Urls) -> Result<Link, (String, &'static str, String)> {
    let url_of = |sub: &str, v: &Value| -> Result<String, (String, &'static str, String)> {
        match v {
            Value::String(raw) => {
                let url = urls.interpolate(raw);
                if is_http_url(&url) {
                    Ok(url.into_owned())
                } else {
                    Err((
                        sub.to_string(),
                        "url",
                        format!("must be an absolute http or https URL of at most {MAX_URL} characters"),
                    ))
                }
            }
            other => Err((sub.to_string(), "type", format!("a URL must be a string, not {}", kind(other)))),
        }
    };
    match value {
        Value::String(_) => {
            Ok(Link { field: field.to_string(), label: DEFAULT_LINK_LABEL.to_string(), url: url_of("", value)? })
        }
        Value::Array(items) if items.len() == 1 => {
            Ok(Link { field: field.to_string(), label: DEFAULT_LINK_LABEL.to_string(), url: url_of("[0]", &items[0])? })
        }
        Value::Array(items) if items.len() == 2 => {
            let label = match &items[0] {
                Value::String(l)
                    if !l.trim().is_empty() && l.chars().count() <= MAX_SHORT && !l.chars().any(char::is_control) =>
                {
                    urls.interpolate(l).into_owned()
                }
                Value::String(_) => {
                    return Err((
                        "[0]".into(),
                        "text",
                        format!("a label is 1-{MAX_SHORT} characters without control characters"),
                    ))
                }
                other => return Err(("[0]".into(), "type", format!("a label must be a string, not {}", kind(other)))),
            };
            Ok(Link { field: field.to_string(), label, url: url_of("[1]", &items[1])? })
        }
        other => Err((
            String::new(),
            "link",
            format!(
                "must be a URL or a [label, URL] list, not {}",
                if other.is_array() { "a list of another length" } else { kind(other) }
            ),
        )),
    }
}

/// `s` starts with the ASCII `prefix`, ignoring case.
fn starts_ci(s: &str, prefix: &str) -> bool {
    s.as_bytes().get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// An absolute http(s) URL with a host, without whitespace, control
/// characters, quotes or angle brackets.
pub fn is_http_url(s: &str) -> bool {
    let rest = if starts_ci(s, "https://") {
        &s[8..]
    } else if starts_ci(s, "http://") {
        &s[7..]
    } else {
        return false;
    };
    s.chars().count() <= MAX_URL
        && rest.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '[')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '`'))
}

/// An activity's values made for people. Hidden and undeclared fields are
/// not in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rendered {
    /// Visible fields as HTML: every character of the value escaped;
    /// in `parse` fields, references and URLs wrapped in `<a href>`.
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    /// The link fields' `{label, url}`.
    pub links: Vec<Link>,
    /// Object references found in parsed fields (`artf12345`).
    pub references: Vec<String>,
}

/// Renders `fields` (an activity's current values or one message's) by
/// `schema`: visible fields only, placeholders replaced, HTML escaped.
pub fn render(schema: &Schema, fields: &Map<String, Value>, urls: &Urls) -> Rendered {
    let mut out = Rendered::default();
    for (key, value) in fields {
        if value.is_null() || schema.is_hidden(key) {
            continue;
        }
        match schema.kind_of(key) {
            None | Some(FieldKind::Mandatory) => {}
            Some(FieldKind::Link) => {
                if let Ok(l) = link(key, value, urls) {
                    out.links.push(l);
                }
            }
            Some(FieldKind::Parse) => {
                if let Value::String(s) = value {
                    let (html, refs) = render_parsed(&urls.interpolate(s), urls);
                    for r in refs {
                        if !out.references.contains(&r) {
                            out.references.push(r);
                        }
                    }
                    out.fields.insert(key.clone(), Value::String(html));
                }
            }
            Some(FieldKind::Stock | FieldKind::Custom) => {
                let plain = match value {
                    Value::String(s) => urls.interpolate(s).into_owned(),
                    Value::Array(items) if items.iter().all(|x| !x.is_array() && !x.is_object()) => items
                        .iter()
                        .map(|x| match x {
                            Value::String(s) => urls.interpolate(s).into_owned(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                };
                out.fields.insert(key.clone(), Value::String(escape_html(&plain)));
            }
        }
    }
    out
}

/// `&`, `<`, `>`, `"` and `'` as entities.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Parsed text as HTML: object references (`[artf12345]`: lower-case
/// letters then digits in brackets) link to `GO_URL/artf12345`; URLs
/// (`http://`, `https://`, `www.`) link to themselves (`www.` gets
/// `http://`); everything else is escaped. Also returns the references.
pub fn render_parsed(text: &str, urls: &Urls) -> (String, Vec<String>) {
    let mut html = String::with_capacity(text.len() + 16);
    let mut refs = Vec::new();
    let mut i = 0;
    let mut plain_from = 0;
    let flush = |html: &mut String, from: usize, to: usize| html.push_str(&escape_html(&text[from..to]));
    while i < text.len() {
        let rest = &text[i..];
        if let Some(len) = reference_len(rest) {
            let id = &rest[1..len - 1];
            flush(&mut html, plain_from, i);
            let href = format!("{}/{}", urls.go, id);
            html.push_str(&format!("<a href=\"{}\">{}</a>", escape_html(&href), escape_html(&rest[..len])));
            if !refs.iter().any(|r| r == id) {
                refs.push(id.to_string());
            }
            i += len;
            plain_from = i;
            continue;
        }
        let boundary = text[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
        if let Some((len, href)) = url_at(rest, boundary) {
            flush(&mut html, plain_from, i);
            html.push_str(&format!("<a href=\"{}\">{}</a>", escape_html(&href), escape_html(&rest[..len])));
            i += len;
            plain_from = i;
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    flush(&mut html, plain_from, text.len());
    (html, refs)
}

/// Length of a reference (`[artf12345]`) at the start of `s`.
fn reference_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    let letters = b[1..].iter().take(11).take_while(|c| c.is_ascii_lowercase()).count();
    let digits = b[1 + letters..].iter().take(13).take_while(|c| c.is_ascii_digit()).count();
    let end = 1 + letters + digits;
    ((1..=10).contains(&letters) && (1..=12).contains(&digits) && b.get(end) == Some(&b']')).then_some(end + 1)
}

/// A URL at the start of `s` (only where a word starts): its length and
/// its href. Trailing punctuation and unbalanced closing brackets are left
/// out, so "see http://x.org/a." links `http://x.org/a`.
fn url_at(s: &str, boundary: bool) -> Option<(usize, String)> {
    if !boundary {
        return None;
    }
    let (prefix, www) = if starts_ci(s, "https://") {
        (8, false)
    } else if starts_ci(s, "http://") {
        (7, false)
    } else if starts_ci(s, "www.") {
        (4, true)
    } else {
        return None;
    };
    // A host must follow; checked first so that a failed match costs no
    // scan (the text is walked once however it is made).
    if !s[prefix..].chars().next().is_some_and(char::is_alphanumeric) {
        return None;
    }
    let stop = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`');
    let mut end = s.find(stop).unwrap_or(s.len());
    let count = |c: char| s[..end].matches(c).count();
    let (open_paren, mut close_paren, open_bracket, mut close_bracket) =
        (count('('), count(')'), count('['), count(']'));
    // The character after the prefix is alphanumeric, so this stops
    // before the prefix.
    while let Some(last) = s[..end].chars().next_back() {
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' if close_paren > open_paren => {
                close_paren -= 1;
                true
            }
            ']' if close_bracket > open_bracket => {
                close_bracket -= 1;
                true
            }
            _ => false,
        };
        if !strip {
            break;
        }
        end -= last.len_utf8();
    }
    let url = &s[..end];
    let href = if www { format!("http://{url}") } else { url.to_string() };
    Some((end, href))
}

/// `message` laid over `current`: each key of the message replaces the
/// current value (`null` clears it).
pub fn overlay(current: &mut Map<String, Value>, message: &Map<String, Value>) {
    for (k, v) in message {
        current.insert(k.clone(), v.clone());
    }
}

/// The `important` fields whose value differs between `before` and
/// `after`: set (absent or null before), changed, or cleared.
pub fn important_changes(schema: &Schema, before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    let value = |m: &Map<String, Value>, k: &str| m.get(k).filter(|v| !v.is_null()).cloned();
    schema.important.iter().filter(|f| value(before, f) != value(after, f)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Spec 003's last (complete) example schema, as JSON.
    fn spec_schema() -> Value {
        json!({
            "api_version": "1",
            "source_association_key": "8578c900-f8df-0131-84ff-3c07547a48b0",
            "custom_schema": {
                "name": "Faux Schema",
                "schema_id": "fc358dd0-11dc-0132-b9fe-3c07547a48b0",
                "schema_version": 2,
                "event_time": "2015-02-02T17:15:32.320Z",
                "fields": ["schema_id", "schema_version", "event_time", "remote_id", "associated_remote_id",
                    "summary", "status_name", "status_type", "rule", "deploy_url", "deploy_message",
                    "environment", "authorized_by"],
                "required": ["schema_id", "schema_version", "event_time", "remote_id", "rule"],
                "important": ["summary", "status_name"],
                "parse": ["deploy_message"],
                "link_to": ["deploy_url"],
                "hidden": ["environment", "authorized_by"]
            }
        })
    }

    /// Spec 003's example activity message, as JSON.
    fn spec_activity() -> Value {
        json!({
            "api_version": "1",
            "source_association_key": "8578c900-f8df-0131-84ff-3c07547a48b0",
            "custom_data": {
                "name": "Faux Schema",
                "schema_id": "fc358dd0-11dc-0132-b9fe-3c07547a48b0",
                "schema_version": 2,
                "event_time": "2015-02-02T17:15:32.320Z",
                "remote_id": "deploy-1234",
                "rule": "1 comes before 2",
                "summary": "Deploy at 4:52pm on a Friday",
                "deploy_message": "Deploying to fix [artf12345] and [artf12346] as critical bugs.",
                "associated_remote_id": "b4c8e50c908ade5c6f053e1ef6422f88",
                "link_to": ["Deploy Details", "http://www.example.com/deploy/deploy-1234"],
                "status_type": "open",
                "environment": "Dev Stage 1"
            }
        })
    }

    fn urls() -> Urls {
        Urls::new("https://junction.example/")
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect()
    }

    fn schema_rules(body: Value) -> Vec<(String, String)> {
        SchemaMessage::parse(&body).unwrap_err().0.into_iter().map(|v| (v.field, v.rule)).collect()
    }

    fn with_schema(changes: Value) -> Value {
        let mut body = spec_schema();
        for (k, val) in changes.as_object().unwrap() {
            if let Some(k) = k.strip_prefix('-') {
                body["custom_schema"].as_object_mut().unwrap().remove(k);
            } else {
                body["custom_schema"][k] = val.clone();
            }
        }
        body
    }

    fn schema() -> Schema {
        SchemaMessage::parse(&spec_schema()).unwrap().schema
    }

    fn activity_rules(body: Value) -> Vec<(String, String)> {
        let env = ActivityEnvelope::read(&body);
        env.validate(Some(&schema()), &urls()).unwrap_err().0.into_iter().map(|v| (v.field, v.rule)).collect()
    }

    fn with_data(changes: Value) -> Value {
        let mut body = spec_activity();
        for (k, val) in changes.as_object().unwrap() {
            if let Some(k) = k.strip_prefix('-') {
                body["custom_data"].as_object_mut().unwrap().remove(k);
            } else {
                body["custom_data"][k] = val.clone();
            }
        }
        body
    }

    #[test]
    fn the_spec_schema_is_accepted_and_normalised() {
        let m = SchemaMessage::parse(&spec_schema()).unwrap();
        assert_eq!(m.source_association_key.as_deref(), Some("8578c900-f8df-0131-84ff-3c07547a48b0"));
        let s = m.schema;
        assert_eq!((s.name.as_str(), s.schema_version), ("Faux Schema", 2));
        assert_eq!(s.event_time, "2015-02-02T17:15:32.320Z".parse::<Timestamp>().unwrap());
        assert_eq!(s.hidden, ["environment", "authorized_by"]);
        // Optional lists absent: empty; the key itself may be left out.
        let m = SchemaMessage::parse(&with_schema(
            json!({"-important": null, "-parse": null, "-link_to": null, "-hidden": null}),
        ))
        .unwrap();
        assert!(m.schema.important.is_empty() && m.schema.hidden.is_empty());
        let mut body = spec_schema();
        body.as_object_mut().unwrap().remove("source_association_key");
        assert_eq!(SchemaMessage::parse(&body).unwrap().source_association_key, None);
        // Stock fields need not be listed to be named.
        let m = SchemaMessage::parse(&with_schema(json!({
            "fields": ["schema_id", "schema_version", "event_time", "remote_id", "rule", "deploy_url", "deploy_message", "environment", "authorized_by"],
            "required": ["schema_id", "schema_version", "event_time", "remote_id", "summary"]
        })))
        .unwrap();
        assert_eq!(m.schema.important, ["summary", "status_name"]);
        // A UUID or letters, digits and dashes.
        assert!(SchemaMessage::parse(&with_schema(json!({"schema_id": "deploy-Schema-7"}))).is_ok());
    }

    #[test]
    fn every_schema_violation_is_reported() {
        let cases = [
            (json!({"schema_id": "not a uuid!"}), pairs(&[("custom_schema.schema_id", "schema_id")])),
            (json!({"schema_id": ""}), pairs(&[("custom_schema.schema_id", "schema_id")])),
            (json!({"schema_id": "a".repeat(129)}), pairs(&[("custom_schema.schema_id", "schema_id")])),
            (json!({"schema_id": 7}), pairs(&[("custom_schema.schema_id", "type")])),
            (json!({"-schema_id": null}), pairs(&[("custom_schema.schema_id", "required")])),
            (json!({"schema_version": 0}), pairs(&[("custom_schema.schema_version", "range")])),
            (json!({"schema_version": -3}), pairs(&[("custom_schema.schema_version", "range")])),
            (json!({"schema_version": 1e30}), pairs(&[("custom_schema.schema_version", "type")])),
            (json!({"schema_version": u64::MAX}), pairs(&[("custom_schema.schema_version", "range")])),
            (json!({"schema_version": 2.5}), pairs(&[("custom_schema.schema_version", "type")])),
            (json!({"schema_version": "2"}), pairs(&[("custom_schema.schema_version", "type")])),
            (json!({"event_time": "2015-02-02T17:15:32+01:00"}), pairs(&[("custom_schema.event_time", "rfc3339_utc")])),
            (json!({"event_time": "2015-02-02 17:15:32Z"}), pairs(&[("custom_schema.event_time", "rfc3339_utc")])),
            (json!({"event_time": "2015-02-30T17:15:32Z"}), pairs(&[("custom_schema.event_time", "rfc3339_utc")])),
            (json!({"event_time": 1422897332}), pairs(&[("custom_schema.event_time", "type")])),
            (json!({"name": ""}), pairs(&[("custom_schema.name", "required")])),
            (json!({"name": "a\u{0}b"}), pairs(&[("custom_schema.name", "text")])),
            (json!({"colour": "red"}), pairs(&[("custom_schema.colour", "unknown_field")])),
            (
                json!({"fields": ["schema_id", "schema_version", "event_time", "rule", "deploy_url", "deploy_message", "environment", "authorized_by"]}),
                pairs(&[("custom_schema.fields", "mandatory"), ("custom_schema.required[3]", "undeclared")]),
            ),
            (json!({"-fields": null}), pairs(&[("custom_schema.fields", "required")])),
            (json!({"fields": "schema_id"}), pairs(&[("custom_schema.fields", "type")])),
            (json!({"-required": null}), pairs(&[("custom_schema.required", "required")])),
            (
                json!({"required": ["schema_id", "schema_version", "event_time", "rule", "rule", "nope"]}),
                pairs(&[
                    ("custom_schema.required[4]", "duplicate"),
                    ("custom_schema.required[5]", "undeclared"),
                    ("custom_schema.required", "mandatory"),
                ]),
            ),
            (json!({"important": ["summary", 3]}), pairs(&[("custom_schema.important[1]", "type")])),
            (json!({"important": ["environment"]}), pairs(&[("custom_schema.important[0]", "hidden")])),
            (json!({"parse": ["nope"]}), pairs(&[("custom_schema.parse[0]", "undeclared")])),
            (json!({"parse": ["status_type"]}), pairs(&[("custom_schema.parse[0]", "parse_field")])),
            (json!({"parse": ["schema_id"]}), pairs(&[("custom_schema.parse[0]", "parse_field")])),
            (json!({"parse": ["deploy_url"]}), pairs(&[("custom_schema.parse[0]", "conflict")])),
            (json!({"parse": ["environment"]}), pairs(&[("custom_schema.parse[0]", "hidden")])),
            (json!({"link_to": ["summary"]}), pairs(&[("custom_schema.link_to[0]", "link_field")])),
            (json!({"link_to": ["environment"]}), pairs(&[("custom_schema.link_to[0]", "hidden")])),
            (
                json!({"hidden": ["summary", "remote_id", "ghost"]}),
                pairs(&[
                    ("custom_schema.hidden[2]", "undeclared"),
                    ("custom_schema.hidden[0]", "custom_only"),
                    ("custom_schema.hidden[1]", "custom_only"),
                ]),
            ),
            (
                json!({"fields": ["schema_id", "schema_version", "event_time", "remote_id", "rule", "name", "bad name", "summary", "summary"], "-parse": null, "-link_to": null, "-hidden": null}),
                pairs(&[
                    ("custom_schema.fields[8]", "duplicate"),
                    ("custom_schema.fields[5]", "reserved"),
                    ("custom_schema.fields[6]", "field_name"),
                ]),
            ),
            (
                json!({"fields": ["schema_id", "schema_version", "event_time", "remote_id", 7, "rule"], "-parse": null, "-link_to": null, "-hidden": null}),
                pairs(&[("custom_schema.fields[4]", "type")]),
            ),
        ];
        for (change, want) in cases {
            assert_eq!(schema_rules(with_schema(change.clone())), want, "{change}");
        }
        let mut body = spec_schema();
        body["api_version"] = json!(1);
        body["extra"] = json!(true);
        body["source_association_key"] = json!(5);
        assert_eq!(
            schema_rules(body),
            pairs(&[("extra", "unknown_field"), ("api_version", "type"), ("source_association_key", "type")])
        );
        assert_eq!(
            schema_rules(json!({"api_version": "2"})),
            pairs(&[("api_version", "one_of"), ("custom_schema", "required")])
        );
        assert_eq!(schema_rules(json!([])), pairs(&[("body", "type")]));
        // Several problems: all of them.
        let got =
            schema_rules(with_schema(json!({"schema_version": "x", "event_time": "yesterday", "hidden": ["summary"]})));
        assert_eq!(
            got,
            pairs(&[
                ("custom_schema.schema_version", "type"),
                ("custom_schema.event_time", "rfc3339_utc"),
                ("custom_schema.hidden[0]", "custom_only")
            ])
        );
        let many: Vec<String> = (0..201).map(|i| format!("f{i}")).collect();
        assert_eq!(schema_rules(with_schema(json!({"fields": many}))), pairs(&[("custom_schema.fields", "max_items")]));
    }

    #[test]
    fn utc_times_follow_rfc_3339() {
        for ok in [
            "2015-02-02T17:15:32.320Z",
            "2015-02-02T17:15:32Z",
            "2015-02-02t17:15:32z",
            "2015-02-02T17:15:32+00:00",
            "2015-02-02T17:15:32.123456789Z",
        ] {
            assert!(utc_time(ok).is_some(), "{ok}");
        }
        for bad in [
            "2015-02-02T17:15:32",
            "2015-02-02T17:15:32.Z",
            "2015-02-02T17:15Z",
            "2015-02-02T25:15:32Z",
            "2015-13-02T17:15:32Z",
            "2015-02-02T17:15:32.1234567891Z",
            "2015-02-02T17:15:32-05:00",
            "",
            "2015-02-02T17:15:32ZZ",
        ] {
            assert!(utc_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_spec_activity_is_accepted_against_the_spec_schema() {
        let a = ActivityEnvelope::read(&spec_activity()).validate(Some(&schema()), &urls()).unwrap();
        assert_eq!((a.remote_id.as_str(), a.schema_version), ("deploy-1234", 2));
        assert!(!a.fields.contains_key("name") && !a.fields.contains_key("remote_id"));
        assert_eq!(a.fields["environment"], "Dev Stage 1");
        let r = render(&schema(), &a.fields, &urls());
        assert_eq!(
            r.fields["deploy_message"],
            "Deploying to fix <a href=\"https://junction.example/go/artf12345\">[artf12345]</a> and \
             <a href=\"https://junction.example/go/artf12346\">[artf12346]</a> as critical bugs."
        );
        assert_eq!(r.references, ["artf12345", "artf12346"]);
        assert_eq!(
            r.links,
            [Link {
                field: "link_to".into(),
                label: "Deploy Details".into(),
                url: "http://www.example.com/deploy/deploy-1234".into()
            }]
        );
        assert!(!r.fields.contains_key("environment"), "hidden fields are never rendered");
        assert_eq!(r.fields["summary"], "Deploy at 4:52pm on a Friday");
        // A number as remote_id is its decimal text.
        let a =
            ActivityEnvelope::read(&with_data(json!({"remote_id": 1234}))).validate(Some(&schema()), &urls()).unwrap();
        assert_eq!(a.remote_id, "1234");
    }

    #[test]
    fn every_activity_violation_is_reported() {
        let cases = [
            (json!({"-rule": null}), pairs(&[("custom_data.rule", "required")])),
            (json!({"rule": null}), pairs(&[("custom_data.rule", "required")])),
            (json!({"-remote_id": null}), pairs(&[("custom_data.remote_id", "required")])),
            (json!({"remote_id": ""}), pairs(&[("custom_data.remote_id", "required")])),
            (json!({"remote_id": -1}), pairs(&[("custom_data.remote_id", "type")])),
            (json!({"remote_id": "a\nb"}), pairs(&[("custom_data.remote_id", "text")])),
            (json!({"-event_time": null}), pairs(&[("custom_data.event_time", "required")])),
            (json!({"event_time": "2015-02-02"}), pairs(&[("custom_data.event_time", "rfc3339_utc")])),
            (json!({"schema_version": "2"}), pairs(&[("custom_data.schema_version", "type")])),
            (json!({"bad key\u{0}": 1}), pairs(&[("custom_data[\"bad key\\u0000\"]", "field_name")])),
            (json!({"bad key": 1}), pairs(&[("custom_data[\"bad key\"]", "field_name")])),
            (json!({"ticket": "a\u{0}b"}), pairs(&[("custom_data.ticket", "text")])),
            (json!({"ticket": "x".repeat(MAX_VALUE_BYTES)}), pairs(&[("custom_data.ticket", "size")])),
            (json!({"name": "Other"}), pairs(&[("custom_data.name", "schema_name")])),
            (json!({"status_type": "done"}), pairs(&[("custom_data.status_type", "one_of")])),
            (json!({"status_type": 1}), pairs(&[("custom_data.status_type", "type")])),
            (json!({"summary": 42}), pairs(&[("custom_data.summary", "type")])),
            (json!({"summary": "a\u{0}b"}), pairs(&[("custom_data.summary", "text")])),
            (json!({"summary": "x".repeat(MAX_TEXT + 1)}), pairs(&[("custom_data.summary", "text")])),
            (json!({"status_name": "two\nlines"}), pairs(&[("custom_data.status_name", "text")])),
            (json!({"deploy_message": ["a"]}), pairs(&[("custom_data.deploy_message", "type")])),
            (json!({"associated_remote_id": []}), pairs(&[("custom_data.associated_remote_id", "max_items")])),
            (json!({"associated_remote_id": ["a", 2]}), pairs(&[("custom_data.associated_remote_id[1]", "type")])),
            (json!({"link_to": "javascript:alert(1)"}), pairs(&[("custom_data.link_to", "url")])),
            (json!({"link_to": ["Label", "ftp://x"]}), pairs(&[("custom_data.link_to[1]", "url")])),
            (json!({"link_to": ["", "http://x"]}), pairs(&[("custom_data.link_to[0]", "text")])),
            (json!({"link_to": [1, 2, 3]}), pairs(&[("custom_data.link_to", "link")])),
            (json!({"link_to": {"url": "http://x"}}), pairs(&[("custom_data.link_to", "link")])),
            (json!({"deploy_url": "http://a b"}), pairs(&[("custom_data.deploy_url", "url")])),
            (json!({"environment": {"a": "b\u{0}"}}), pairs(&[("custom_data.environment", "text")])),
            (json!({"environment": "x".repeat(MAX_VALUE_BYTES)}), pairs(&[("custom_data.environment", "size")])),
        ];
        for (change, want) in cases {
            assert_eq!(activity_rules(with_data(change.clone())), want, "{change}");
        }
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!([deep]);
        }
        assert_eq!(
            activity_rules(with_data(json!({"environment": deep}))),
            pairs(&[("custom_data.environment", "depth")])
        );
        // Custom values may be anything within the caps; optional fields
        // may be null (cleared).
        for ok in [
            json!({"environment": {"a": [1, 2.5, true, null]}}),
            json!({"summary": null}),
            json!({"deploy_url": ["Go", "%JUNCTION_GO_URL%/page1001"]}),
        ] {
            let body = with_data(ok.clone());
            assert!(ActivityEnvelope::read(&body).validate(Some(&schema()), &urls()).is_ok(), "{ok}");
        }
        // Everything at once, envelope included.
        let mut body = with_data(json!({"-rule": null, "ticket": 1, "bad key": 1, "status_type": "done"}));
        body["api_version"] = json!("2");
        body["extra"] = json!(1);
        assert_eq!(
            activity_rules(body),
            pairs(&[
                ("extra", "unknown_field"),
                ("api_version", "one_of"),
                ("custom_data.status_type", "one_of"),
                ("custom_data[\"bad key\"]", "field_name"),
                ("custom_data.rule", "required"),
            ])
        );
        let env = ActivityEnvelope::read(&json!({"api_version": "1", "custom_data": []}));
        assert_eq!(
            env.validate(None, &urls()).unwrap_err().0.into_iter().map(|v| (v.field, v.rule)).collect::<Vec<_>>(),
            pairs(&[("source_association_key", "required"), ("custom_data", "type")])
        );
        let mut env = ActivityEnvelope::read(&spec_activity());
        env.refuse(Violation::new("custom_data.schema_version", "unknown_version", "no such version"));
        assert_eq!(env.validate(None, &urls()).unwrap_err().0[0].rule, "unknown_version");
    }

    /// Spec 003's walkthrough sends its activity (with `environment`)
    /// while the schema it has registered so far does not declare
    /// `environment`: the message is taken, the undeclared field stored,
    /// listed, and never rendered.
    #[test]
    fn undeclared_custom_fields_are_kept_listed_and_never_rendered() {
        let walkthrough = with_schema(json!({
            "fields": ["schema_id", "schema_version", "event_time", "remote_id", "associated_remote_id", "summary",
                "status_name", "status_type", "link_to", "rule", "deploy_url", "deploy_message"],
            "-link_to": null, "-hidden": null
        }));
        let schema = SchemaMessage::parse(&walkthrough).unwrap().schema;
        let env = ActivityEnvelope::read(&spec_activity());
        let a = env.validate(Some(&schema), &urls()).unwrap();
        assert_eq!(a.fields["environment"], "Dev Stage 1");
        assert_eq!(schema.undeclared(&a.fields), ["environment"]);
        assert!(render(&schema, &a.fields, &urls()).fields.get("environment").is_none());
        // Any JSON within the custom caps; markup stays out of the rendering.
        let body = with_data(json!({
            "environment": "<script>alert(1)</script>", "authorized_by": {"who": ["alice", 1, null]}, "ticket": null
        }));
        let a = ActivityEnvelope::read(&body).validate(Some(&schema), &urls()).unwrap();
        assert_eq!(schema.undeclared(&a.fields), ["environment", "authorized_by", "ticket"]);
        let rendered = serde_json::to_string(&render(&schema, &a.fields, &urls())).unwrap();
        assert!(!rendered.contains("script") && !rendered.contains("alice"), "{rendered}");
        // Declared fields keep their types: an undeclared field is no way
        // around them.
        let wrong = with_data(json!({"summary": 5, "environment": "x"}));
        let refused = ActivityEnvelope::read(&wrong).validate(Some(&schema), &urls()).unwrap_err();
        assert_eq!(
            refused.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect::<Vec<_>>(),
            [("custom_data.summary", "type")]
        );
        // Under the complete schema nothing is undeclared.
        let a = ActivityEnvelope::read(&spec_activity()).validate(Some(&self::schema()), &urls()).unwrap();
        assert!(self::schema().undeclared(&a.fields).is_empty());
    }

    #[test]
    fn hints_name_the_schema_of_a_refused_message() {
        assert_eq!(message_hints(&spec_schema()), (Some("fc358dd0-11dc-0132-b9fe-3c07547a48b0".into()), Some(2)));
        assert_eq!(message_hints(&spec_activity()).1, Some(2));
        assert_eq!(message_hints(&json!({"custom_data": {"schema_id": "bad id", "schema_version": 0}})), (None, None));
        assert_eq!(message_hints(&json!("x")), (None, None));
    }

    #[test]
    fn parsed_text_links_references_and_urls_and_escapes_the_rest() {
        let u = urls();
        let cases = [
            ("plain <b>bold</b> & 'q'", "plain &lt;b&gt;bold&lt;/b&gt; &amp; &#39;q&#39;"),
            ("fix [artf12345].", "fix <a href=\"https://junction.example/go/artf12345\">[artf12345]</a>."),
            ("[ARTF1] [artf] [12] [artf1x]", "[ARTF1] [artf] [12] [artf1x]"),
            (
                "see http://x.org/a?b=1&c=2.",
                "see <a href=\"http://x.org/a?b=1&amp;c=2\">http://x.org/a?b=1&amp;c=2</a>.",
            ),
            ("(https://x.org/wiki/A_(b))", "(<a href=\"https://x.org/wiki/A_(b)\">https://x.org/wiki/A_(b)</a>)"),
            ("www.example.com", "<a href=\"http://www.example.com\">www.example.com</a>"),
            ("awww.example.com", "awww.example.com"),
            ("http://", "http://"),
            ("https://x.org/\"><script>", "<a href=\"https://x.org/\">https://x.org/</a>&quot;&gt;&lt;script&gt;"),
            ("javascript:alert(1)", "javascript:alert(1)"),
            ("ünïcode www.ex.de/ä", "ünïcode <a href=\"http://www.ex.de/ä\">www.ex.de/ä</a>"),
        ];
        for (text, want) in cases {
            assert_eq!(render_parsed(text, &u).0, want, "{text}");
        }
        assert_eq!(render_parsed("[artf1] [task22] [artf1]", &u).1, ["artf1", "task22"]);
        // Text made to be slow is walked once (tens of milliseconds); tests do
        // not assert on wall time, so a quadratic walk would show as a test
        // that takes minutes. Each still renders to something.
        for hostile in [
            "(www.".repeat(13_000),
            format!("http://x{}", ")".repeat(60_000)),
            "[a".repeat(30_000),
            "http:///".repeat(8_000),
        ] {
            assert!(!render_parsed(&hostile, &u).0.is_empty());
        }
        assert_eq!(render_parsed("x http://a.b/c)) y", &u).0, "x <a href=\"http://a.b/c\">http://a.b/c</a>)) y");
    }

    #[test]
    fn placeholders_are_interpolated_and_rendering_skips_hidden_fields() {
        let u = Urls::new("http://127.0.0.1:8080");
        assert_eq!(u.go, "http://127.0.0.1:8080/go");
        assert_eq!(
            u.interpolate("See %CTF_GO_URL%/page1001 or %JUNCTION_BASE_URL%"),
            "See http://127.0.0.1:8080/go/page1001 or http://127.0.0.1:8080"
        );
        assert_eq!(u.interpolate("%JUNCTION_GO_URL%"), "http://127.0.0.1:8080/go");
        let s = schema();
        let fields = json!({
            "summary": "Deploy. See %CTF_GO_URL%/page1001 <now>",
            "deploy_message": "at %JUNCTION_BASE_URL%/x",
            "deploy_url": "%JUNCTION_GO_URL%/deploy/1",
            "associated_remote_id": ["a", "b"],
            "rule": 7,
            "environment": "secret-ish",
            "authorized_by": "boss",
            "leftover": "from an older version",
            "status_name": null
        });
        let r = render(&s, fields.as_object().unwrap(), &u);
        assert_eq!(r.fields["summary"], "Deploy. See http://127.0.0.1:8080/go/page1001 &lt;now&gt;");
        assert_eq!(r.fields["deploy_message"], "at <a href=\"http://127.0.0.1:8080/x\">http://127.0.0.1:8080/x</a>");
        assert_eq!(r.fields["associated_remote_id"], "a, b");
        assert_eq!(r.fields["rule"], "7");
        assert_eq!(
            r.links,
            [Link {
                field: "deploy_url".into(),
                label: "See More".into(),
                url: "http://127.0.0.1:8080/go/deploy/1".into()
            }]
        );
        let shown: Vec<&str> = r.fields.keys().map(String::as_str).collect();
        assert_eq!(shown, ["summary", "deploy_message", "associated_remote_id", "rule"]);
    }

    #[test]
    fn important_changes_are_sets_changes_and_clears() {
        let s = schema();
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(important_changes(&s, &m(json!({})), &m(json!({"summary": "a", "rule": "x"}))), ["summary"]);
        assert!(important_changes(&s, &m(json!({"summary": "a"})), &m(json!({"summary": "a", "rule": "y"}))).is_empty());
        assert_eq!(
            important_changes(
                &s,
                &m(json!({"summary": "a", "status_name": "x"})),
                &m(json!({"summary": null, "status_name": "y"}))
            ),
            ["summary", "status_name"]
        );
        assert!(important_changes(&s, &m(json!({})), &m(json!({"summary": null}))).is_empty());
        let mut current = m(json!({"summary": "a", "rule": "x"}));
        overlay(&mut current, &m(json!({"rule": "y", "status_name": "ok"})));
        assert_eq!(Value::Object(current), json!({"summary": "a", "rule": "y", "status_name": "ok"}));
    }
}
