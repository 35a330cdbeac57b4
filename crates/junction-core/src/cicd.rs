//! Spec 002: a CI/CD job reported by a Custom CD agent
//! (`POST /webhook/company/{company_id}/cicd_job`). The message is strict:
//! every field has one JSON type, and a message is refused with *all* of
//! its violations, never only the first, so an agent's author fixes a
//! payload in one round.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::document::{kind, unknown_keys};
use crate::validation::{Invalid, Violations};

pub const STATUSES: [&str; 3] = ["Succeeded", "Failed", "On Hold"];
pub const OPTIONAL_TYPES: [&str; 5] = ["string", "integer", "float", "duration", "timestamp"];
pub const DEFAULT_TRIGGERED_BY: &str = "Custom CD Agent";
pub const DEFAULT_JOB_TYPE: &str = "CUSTOM_CD_JOB";
/// Spec 002: at most 20 optional fields, each with at most 20 values.
pub const MAX_OPTIONAL: usize = 20;
pub const MAX_VALUES: usize = 20;
/// Longest text accepted in any string field.
const MAX_TEXT: usize = 1024;
/// 9999-12-31T23:59:59Z: an epoch second beyond it is a unit mistake
/// (milliseconds), not a date.
const MAX_EPOCH_SECONDS: i64 = 253_402_300_799;

const KEYS: [&str; 12] = [
    "job_id",
    "commit_sha",
    "service_id",
    "job_start_time",
    "job_duration",
    "status",
    "repo_id",
    "repo_name",
    "triggered_by",
    "job_type",
    "optional",
    // Accepted and ignored: some agents send the company again.
    "company_id",
];

/// A validated CI/CD job, defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CicdJob {
    pub job_id: String,
    /// Lower-case hex, 40 or 64 characters.
    pub commit_sha: String,
    pub service_id: i64,
    /// Seconds since the epoch.
    pub job_start_time: i64,
    /// Seconds.
    pub job_duration: i64,
    pub status: String,
    pub repo_id: Option<String>,
    pub repo_name: Option<String>,
    pub triggered_by: String,
    pub job_type: String,
    pub optional: Vec<OptionalField>,
}

/// One of spec 002's optional fields: `value` is one value or a list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OptionalField {
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub value: Value,
}

impl CicdJob {
    pub fn parse(body: &Value) -> Result<CicdJob, Invalid> {
        let Value::Object(obj) = body else {
            return Err(Invalid::one("body", "type", format!("a CI/CD job must be a JSON object, not {}", kind(body))));
        };
        let mut v = Violations::default();
        unknown_keys(obj, &KEYS, "", "a CI/CD job (spec 002)", &mut v);
        let job_id = text(obj, "job_id", true, &mut v);
        let commit_sha = text(obj, "commit_sha", true, &mut v).and_then(|sha| {
            let ok = (sha.len() == 40 || sha.len() == 64) && sha.bytes().all(|b| b.is_ascii_hexdigit());
            if ok {
                Some(sha.to_ascii_lowercase())
            } else {
                v.push("commit_sha", "sha", "must be the full commit SHA: 40 or 64 hexadecimal characters");
                None
            }
        });
        let service_id = integer(obj, "service_id", 1, i64::MAX, &mut v);
        let job_start_time = integer(obj, "job_start_time", 0, MAX_EPOCH_SECONDS, &mut v);
        let job_duration = integer(obj, "job_duration", 0, i64::MAX, &mut v);
        let status = text(obj, "status", true, &mut v).and_then(|s| {
            if STATUSES.contains(&s.as_str()) {
                Some(s)
            } else {
                v.push("status", "one_of", "must be one of \"Succeeded\", \"Failed\", \"On Hold\"");
                None
            }
        });
        let repo_id = text(obj, "repo_id", false, &mut v).filter(|s| !s.is_empty());
        let repo_name = text(obj, "repo_name", false, &mut v).filter(|s| !s.is_empty());
        let repo_mistyped = ["repo_id", "repo_name"].iter().any(|k| obj.get(*k).is_some_and(|x| !x.is_string()));
        if repo_id.is_none() && repo_name.is_none() && !repo_mistyped {
            v.push("repo_id", "required", "one of repo_id and repo_name must be given");
        }
        let triggered_by = text(obj, "triggered_by", false, &mut v)
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TRIGGERED_BY.to_string());
        let job_type = text(obj, "job_type", false, &mut v)
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_JOB_TYPE.to_string());
        let optional = optional_fields(obj.get("optional"), &mut v);

        match (job_id, commit_sha, service_id, job_start_time, job_duration, status) {
            (
                Some(job_id),
                Some(commit_sha),
                Some(service_id),
                Some(job_start_time),
                Some(job_duration),
                Some(status),
            ) if v.is_empty() => Ok(CicdJob {
                job_id,
                commit_sha,
                service_id,
                job_start_time,
                job_duration,
                status,
                repo_id,
                repo_name,
                triggered_by,
                job_type,
                optional,
            }),
            _ => Err(v.finish(()).err().unwrap_or_else(|| Invalid::one("body", "type", "not a CI/CD job"))),
        }
    }
}

/// A string field; `required` reports a missing one. Any other JSON type
/// (numbers, booleans, null) is a type violation.
fn text(obj: &Map<String, Value>, key: &str, required: bool, v: &mut Violations) -> Option<String> {
    match obj.get(key) {
        None if required => {
            v.push(key, "required", format!("{key} is required"));
            None
        }
        None => None,
        Some(Value::String(s)) if required && s.trim().is_empty() => {
            v.push(key, "required", format!("{key} must not be empty"));
            None
        }
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT || s.chars().any(char::is_control) => {
            v.push(key, "text", format!("must be at most {MAX_TEXT} characters, without control characters"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            v.push(key, "type", format!("must be a string, not {}", kind(other)));
            None
        }
    }
}

/// A required JSON integer in `min..=max`: not a string of digits, not a
/// float (even 300.0), not a boolean or null.
fn integer(obj: &Map<String, Value>, key: &str, min: i64, max: i64, v: &mut Violations) -> Option<i64> {
    match obj.get(key) {
        None => {
            v.push(key, "required", format!("{key} is required"));
            None
        }
        Some(value) => integer_value(key, value, min, max, v),
    }
}

fn integer_value(field: &str, value: &Value, min: i64, max: i64, v: &mut Violations) -> Option<i64> {
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => match n.as_i64() {
            Some(x) if (min..=max).contains(&x) => Some(x),
            // Below the minimum; a u64 beyond i64 is above every maximum.
            Some(x) if x < min => {
                v.push(field, "range", format!("must be at least {min}"));
                None
            }
            _ => {
                v.push(field, "range", format!("must be at most {max}"));
                None
            }
        },
        Value::Number(n) => {
            v.push(field, "type", format!("must be an integer, not the fraction {n}"));
            None
        }
        other => {
            v.push(field, "type", format!("must be an integer, not {}", kind(other)));
            None
        }
    }
}

fn optional_fields(value: Option<&Value>, v: &mut Violations) -> Vec<OptionalField> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            v.push("optional", "type", format!("must be a list of {{key, value, type}}, not {}", kind(other)));
            return Vec::new();
        }
    };
    if items.len() > MAX_OPTIONAL {
        v.push("optional", "max_items", format!("at most {MAX_OPTIONAL} optional fields, not {}", items.len()));
    }
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let base = format!("optional[{i}]");
        let Value::Object(o) = item else {
            v.push(&base, "type", format!("must be an object {{key, value, type}}, not {}", kind(item)));
            continue;
        };
        unknown_keys(o, &["key", "value", "type"], &base, "an optional field", v);
        let key = match o.get("key") {
            Some(Value::String(k)) if !k.trim().is_empty() && k.len() <= 256 && !k.chars().any(char::is_control) => {
                if seen.contains(&k.as_str()) {
                    v.push(format!("{base}.key"), "duplicate", format!("the key {k:?} is given twice"));
                }
                seen.push(k);
                Some(k.clone())
            }
            Some(Value::String(_)) => {
                v.push(format!("{base}.key"), "text", "must be 1-256 characters without control characters");
                None
            }
            None => {
                v.push(format!("{base}.key"), "required", "key is required");
                None
            }
            Some(other) => {
                v.push(format!("{base}.key"), "type", format!("must be a string, not {}", kind(other)));
                None
            }
        };
        let ty = match o.get("type") {
            Some(Value::String(t)) if OPTIONAL_TYPES.contains(&t.as_str()) => Some(t.clone()),
            Some(Value::String(_)) => {
                v.push(
                    format!("{base}.type"),
                    "one_of",
                    "must be one of \"string\", \"integer\", \"float\", \"duration\", \"timestamp\"",
                );
                None
            }
            None => {
                v.push(format!("{base}.type"), "required", "type is required");
                None
            }
            Some(other) => {
                v.push(format!("{base}.type"), "type", format!("must be a string, not {}", kind(other)));
                None
            }
        };
        let value = match o.get("value") {
            None => {
                v.push(format!("{base}.value"), "required", "value is required");
                None
            }
            Some(value) => Some(value),
        };
        if let (Some(key), Some(ty), Some(value)) = (key, ty, value) {
            let before = v.len();
            match value {
                Value::Array(values) => {
                    if values.is_empty() || values.len() > MAX_VALUES {
                        v.push(format!("{base}.value"), "max_items", format!("a list holds 1 to {MAX_VALUES} values"));
                    }
                    for (j, x) in values.iter().enumerate() {
                        check_typed(&format!("{base}.value[{j}]"), &ty, x, v);
                    }
                }
                single => check_typed(&format!("{base}.value"), &ty, single, v),
            }
            if v.len() == before {
                out.push(OptionalField { key, kind: ty, value: value.clone() });
            }
        }
    }
    out
}

/// One value of an optional field against its declared type.
fn check_typed(field: &str, ty: &str, value: &Value, v: &mut Violations) {
    match (ty, value) {
        ("string", Value::String(s)) if s.chars().count() <= MAX_TEXT => {}
        ("string", Value::String(_)) => v.push(field, "text", format!("must be at most {MAX_TEXT} characters")),
        ("string", other) => {
            v.push(field, "type", format!("a string field's value must be a string, not {}", kind(other)))
        }
        ("float", Value::Number(_)) => {}
        ("float", other) => {
            v.push(field, "type", format!("a float field's value must be a number, not {}", kind(other)))
        }
        ("integer", value) => {
            integer_value(field, value, i64::MIN, i64::MAX, v);
        }
        ("duration", value) => {
            integer_value(field, value, 0, i64::MAX, v);
        }
        ("timestamp", value) => {
            integer_value(field, value, 0, MAX_EPOCH_SECONDS, v);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Value {
        json!({
            "job_id": "1", "status": "Succeeded", "commit_sha": "a2e7da86cc392417b0d9f605b28038aae80b002f",
            "triggered_by": "testuser@org.com", "repo_id": "12345", "service_id": 2,
            "job_start_time": 1704018030, "job_duration": 300, "job_type": "Production Deploy",
            "optional": [
                {"key": "microservice", "value": ["frontend", "backend"], "type": "string"},
                {"key": "lead_time", "value": 20, "type": "duration"},
                {"key": "float_key", "value": 20.5, "type": "float"},
                {"key": "qa_approved_on", "value": 1704018030, "type": "timestamp"}
            ]
        })
    }

    fn rules(body: Value) -> Vec<(String, String)> {
        CicdJob::parse(&body).unwrap_err().0.into_iter().map(|v| (v.field, v.rule)).collect()
    }

    fn with(changes: Value) -> Value {
        let mut body = sample();
        for (k, val) in changes.as_object().unwrap() {
            if val.is_null() && k.starts_with('-') {
                body.as_object_mut().unwrap().remove(&k[1..]);
            } else {
                body[k] = val.clone();
            }
        }
        body
    }

    #[test]
    fn the_spec_sample_is_accepted_with_defaults_for_blank_fields() {
        let job = CicdJob::parse(&sample()).unwrap();
        assert_eq!(job.service_id, 2);
        assert_eq!(job.optional.len(), 4);
        assert_eq!(job.triggered_by, "testuser@org.com");
        let job = CicdJob::parse(&with(json!({"triggered_by": "", "-job_type": null, "-repo_id": null, "repo_name": "web", "commit_sha": "A".repeat(64)}))).unwrap();
        assert_eq!(job.triggered_by, DEFAULT_TRIGGERED_BY);
        assert_eq!(job.job_type, DEFAULT_JOB_TYPE);
        assert_eq!(job.repo_name.as_deref(), Some("web"));
        assert_eq!(job.commit_sha, "a".repeat(64));
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect::<Vec<_>>();
        let cases = [
            (json!({"service_id": "2"}), pairs(&[("service_id", "type")])),
            (json!({"job_start_time": 1704018030.0}), pairs(&[("job_start_time", "type")])),
            (json!({"job_duration": -1}), pairs(&[("job_duration", "range")])),
            (json!({"job_duration": true}), pairs(&[("job_duration", "type")])),
            (json!({"status": "Done"}), pairs(&[("status", "one_of")])),
            (json!({"status": null}), pairs(&[("status", "type")])),
            (json!({"commit_sha": "abc"}), pairs(&[("commit_sha", "sha")])),
            (json!({"commit_sha": "g".repeat(40)}), pairs(&[("commit_sha", "sha")])),
            (json!({"job_id": 1}), pairs(&[("job_id", "type")])),
            (json!({"-job_id": null}), pairs(&[("job_id", "required")])),
            (json!({"-repo_id": null}), pairs(&[("repo_id", "required")])),
            (json!({"repo_id": 12345}), pairs(&[("repo_id", "type")])),
            (json!({"job_start_time": 1704018030000i64 * 1000}), pairs(&[("job_start_time", "range")])),
            (json!({"jobId": "x"}), pairs(&[("jobId", "unknown_field")])),
            (json!({"optional": {}}), pairs(&[("optional", "type")])),
            (
                json!({"optional": [
                    {"key": "a", "value": "x", "type": "string"},
                    {"key": "a", "value": 1, "type": "integer"},
                    {"key": "b", "value": "20", "type": "duration"},
                    {"key": "c", "value": [1, "2", 3.5], "type": "integer"},
                    {"key": "d", "value": 1, "type": "date"},
                    {"key": "e", "value": null, "type": "float"},
                    {"value": 1, "type": "integer"},
                    {"key": "f", "value": [], "type": "string"}
                ]}),
                pairs(&[
                    ("optional[1].key", "duplicate"),
                    ("optional[2].value", "type"),
                    ("optional[3].value[1]", "type"),
                    ("optional[3].value[2]", "type"),
                    ("optional[4].type", "one_of"),
                    ("optional[5].value", "type"),
                    ("optional[6].key", "required"),
                    ("optional[7].value", "max_items"),
                ]),
            ),
        ];
        for (change, want) in cases {
            assert_eq!(rules(with(change.clone())), want, "{change}");
        }
        // Several broken fields: all of them, in one answer.
        let got = rules(with(json!({"service_id": "2", "status": "Done", "job_duration": 1.5, "commit_sha": 7})));
        assert_eq!(
            got,
            pairs(&[("commit_sha", "type"), ("service_id", "type"), ("job_duration", "type"), ("status", "one_of")])
        );
        let many: Vec<Value> =
            (0..21).map(|i| json!({"key": format!("k{i}"), "value": 1, "type": "integer"})).collect();
        assert_eq!(rules(with(json!({"optional": many}))), pairs(&[("optional", "max_items")]));
        let values: Vec<i64> = (0..21).collect();
        assert_eq!(
            rules(with(json!({"optional": [{"key": "k", "value": values, "type": "integer"}]}))),
            pairs(&[("optional[0].value", "max_items")])
        );
        assert_eq!(rules(json!([1])), pairs(&[("body", "type")]));
    }

    #[test]
    fn out_of_range_integers_name_the_bound_they_break() {
        let message = |change: Value| CicdJob::parse(&with(change)).unwrap_err().0[0].message.clone();
        assert_eq!(message(json!({"service_id": 0})), "must be at least 1");
        assert_eq!(message(json!({"service_id": u64::MAX})), format!("must be at most {}", i64::MAX));
        assert_eq!(message(json!({"job_duration": u64::MAX})), format!("must be at most {}", i64::MAX));
        assert_eq!(message(json!({"job_start_time": -1})), "must be at least 0");
        assert_eq!(
            message(json!({"job_start_time": 1704018030000i64})),
            format!("must be at most {MAX_EPOCH_SECONDS}")
        );
    }
}
