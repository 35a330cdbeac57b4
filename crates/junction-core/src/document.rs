//! Reading user-written JSON documents (applications, configurations)
//! field by field, collecting a violation per problem instead of stopping
//! at the first. Shared by every document kind so each reports the same
//! rules in the same words.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::name::{check_name, check_variable_name};
use crate::secret::{SecretString, SecretWrite, SecretWrites};
use crate::validation::{Invalid, Violation, Violations};

/// Longest user-given key quoted in a message or a field path.
pub(crate) const MAX_KEY: usize = 128;

/// Every key of `obj` not in `known` is a violation at its path under `at`.
pub(crate) fn unknown_keys(obj: &Map<String, Value>, known: &[&str], at: &str, what: &str, v: &mut Violations) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        v.push(path(at, key), "unknown_field", format!("{} is not a field of {what}", quoted(key)));
    }
}

/// The JSON path of `key` under `at`; a key that is not a plain word is
/// written as a quoted JSON string (control characters escaped), cut to a
/// readable length.
pub(crate) fn path(at: &str, key: &str) -> String {
    let plain =
        !key.is_empty() && key.len() <= MAX_KEY && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    let key = if plain { key.to_string() } else { format!("[{}]", quoted(key)) };
    match (at.is_empty(), plain) {
        (true, true) => key,
        (true, false) => key,
        (false, true) => format!("{at}.{key}"),
        (false, false) => format!("{at}{key}"),
    }
}

/// A user-given name for a message: JSON-quoted and cut.
pub(crate) fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(MAX_KEY).collect();
    serde_json::to_string(&cut).unwrap_or_default()
}

/// A JSON type name for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The body as an object, without the keys Junction adds on read-back.
pub(crate) fn object(body: Value, what: &str, server_keys: &[&str]) -> Result<Map<String, Value>, Invalid> {
    let Value::Object(mut doc) = body else {
        return Err(Invalid::one("body", "type", format!("{what} must be a JSON object")));
    };
    for key in server_keys {
        doc.remove(*key);
    }
    Ok(doc)
}

/// The document's `name`: present, a string, a valid resource name.
pub(crate) fn document_name(doc: &Map<String, Value>, what: &str, v: &mut Violations) {
    let required = format!("{what} needs a name");
    if let Some(name) = string(doc, "name", "name", Some(&required), v) {
        if let Err(e) = check_name("name", &name) {
            v.add(e);
        }
    }
}

/// A string field. Absent or null is `None`, and a violation when
/// `required` gives the message to report.
pub(crate) fn string(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
    required: Option<&str>,
    v: &mut Violations,
) -> Option<String> {
    match obj.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => {
            if let Some(msg) = required {
                v.push(field, "required", msg);
            }
            None
        }
        Some(other) => {
            v.push(field, "type", format!("must be a string, not {}", kind(other)));
            None
        }
    }
}

pub(crate) fn opt_bool(obj: &Map<String, Value>, key: &str, field: &str, v: &mut Violations) -> Option<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            v.push(field, "type", format!("must be true or false, not {}", kind(other)));
            None
        }
    }
}

pub(crate) fn opt_uint(obj: &Map<String, Value>, key: &str, field: &str, max: u64, v: &mut Violations) -> Option<u64> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|x| x <= max) => n.as_u64(),
        Some(other) => {
            v.push(field, "type", format!("must be a whole number from 0 to {max}, not {other}"));
            None
        }
    }
}

/// One entry of a list of named variables, as [`named_entries`] yields it.
pub(crate) struct NamedEntry<'a> {
    pub index: usize,
    pub name: String,
    pub obj: &'a mut Map<String, Value>,
}

/// The entries of a list of named variables (`app_variables`,
/// `configuration_data`): each an object with a unique, well-formed `name`.
/// Entries that are not objects or have no usable name are reported and
/// skipped. A missing list is empty, or a violation when `required` gives
/// the message.
pub(crate) fn named_entries<'a>(
    list: Option<&'a mut Value>,
    list_field: &str,
    required: Option<&str>,
    v: &mut Violations,
) -> Vec<NamedEntry<'a>> {
    let items = match list {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            if let Some(msg) = required {
                v.push(list_field, "required", msg);
            }
            return vec![];
        }
        Some(other) => {
            v.push(
                list_field,
                "type",
                format!("must be an array of {{name, value, ...}} objects, not {}", kind(other)),
            );
            return vec![];
        }
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter_mut().enumerate() {
        let at = format!("{list_field}[{index}]");
        let Value::Object(obj) = item else {
            v.push(&at, "type", format!("an entry must be an object, not {}", kind(item)));
            continue;
        };
        let field = format!("{at}.name");
        let Some(name) = string(obj, "name", &field, Some("every entry needs a name"), v) else {
            continue;
        };
        if let Err(e) = check_variable_name(&field, &name) {
            v.add(e);
        }
        if !seen.insert(name.clone()) {
            v.push(&field, "unique", format!("another entry is already named {name:?}"));
        }
        out.push(NamedEntry { index, name, obj });
    }
    out
}

/// For an entry marked encrypted: moves its clear `value` out of the
/// document into `secrets` (a `null` value means "keep the sealed one") and
/// leaves `"value": null` in its place.
pub(crate) fn take_encrypted_value(
    entry: &mut NamedEntry<'_>,
    list_field: &str,
    secrets: &mut SecretWrites,
    v: &mut Violations,
) {
    match entry.obj.insert("value".into(), Value::Null) {
        None | Some(Value::Null) => secrets.push((entry.name.clone(), SecretWrite::Keep)),
        Some(Value::String(s)) => secrets.push((entry.name.clone(), SecretWrite::Set(SecretString::new(s)))),
        Some(other) => v.push(
            format!("{list_field}[{}].value", entry.index),
            "type",
            format!("an encrypted value must be a string, not {}", kind(&other)),
        ),
    }
}

/// Most places [`nul_violations`] names in one answer.
pub const MAX_NUL_REPORTS: usize = 20;

/// Every string and object key of `value` that holds NUL (U+0000), each a
/// violation (rule `no_nul`) naming its JSON path (`user`,
/// `steps[0].name`, `body` for the value itself; a key with NUL is written
/// quoted, `steps[0]["a\u0000b"]`), at most [`MAX_NUL_REPORTS`].
/// PostgreSQL cannot store NUL in text, so every JSON body is checked with
/// this before anything else reads it: both backends refuse it the same way.
pub fn nul_violations(value: &Value) -> Vec<Violation> {
    fn walk(value: &Value, at: &str, out: &mut Vec<Violation>) {
        match value {
            Value::String(s) if s.contains('\0') => {
                let field = if at.is_empty() { "body" } else { at };
                out.push(Violation::new(field, "no_nul", "must not contain NUL (U+0000) characters"));
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if out.len() >= MAX_NUL_REPORTS {
                        return;
                    }
                    walk(item, &format!("{at}[{i}]"), out);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    if out.len() >= MAX_NUL_REPORTS {
                        return;
                    }
                    let here = path(at, key);
                    if key.contains('\0') {
                        out.push(Violation::new(&here, "no_nul", "a key must not contain NUL (U+0000) characters"));
                    }
                    walk(item, &here, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out.truncate(MAX_NUL_REPORTS);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Vec<(String, String)> {
        nul_violations(&value).into_iter().map(|v| (v.field, v.rule)).collect()
    }

    #[test]
    fn nul_in_any_string_or_key_is_named_by_its_path() {
        let nul = |f: &str| (f.to_string(), "no_nul".to_string());
        assert_eq!(fields(json!({"user": "a\u{0}", "password": "x"})), [nul("user")]);
        assert_eq!(fields(json!({"steps": [{"name": "ok"}, {"name": "a\u{0}b"}]})), [nul("steps[1].name")]);
        assert_eq!(fields(json!([{"value": "\u{0}"}])), [nul("[0].value")]);
        assert_eq!(fields(json!("\u{0}")), [nul("body")]);
        assert_eq!(fields(json!({"meta": {"a\u{0}b": 1}})), [nul("meta[\"a\\u0000b\"]")]);
        assert_eq!(fields(json!({"a\u{0}": "\u{0}"})).len(), 2, "the key and its value");
        assert!(fields(json!({"a": ["b", 1, null, {"c": "\\u0000 written out"}]})).is_empty());
        let many: Vec<Value> = (0..100).map(|_| json!("\u{0}")).collect();
        assert_eq!(fields(Value::Array(many)).len(), MAX_NUL_REPORTS);
    }
}
