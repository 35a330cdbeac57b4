//! Event triggers: "when an event of this kind, matching these filters,
//! arrives, run this application as an automated job with the event as its
//! context" (spec 000's automated jobs fired by spec 002's CI/CD jobs).

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::cicd::{CicdJob, STATUSES};
use crate::document::{kind, unknown_keys};
use crate::validation::{Invalid, Violations};

/// The event kinds a trigger can listen to.
pub const EVENTS: [&str; 2] = ["cicd_job", "xds_activity"];

const KEYS: [&str; 8] = ["name", "application", "flow", "event", "company_id", "filter", "arguments", "enabled"];

/// The application name under which a flow's runs (and its triggers) go.
pub const FLOW_PREFIX: &str = ".flow.";
const READ_BACK: [&str; 3] = ["id", "created_at", "updated_at"];
const CICD_FILTERS: [&str; 4] = ["service_id", "status", "job_type", "repo"];
const XDS_FILTERS: [&str; 4] = ["source_id", "schema_id", "status_type", "important_change"];
const STATUS_TYPES: [&str; 3] = ["open", "success", "fail"];

/// A validated trigger definition.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TriggerSpec {
    pub name: String,
    /// The application (job) to run.
    pub application: String,
    /// `cicd_job` or `xds_activity`.
    pub event: String,
    /// Only events of this company; any company when absent.
    pub company_id: Option<i64>,
    /// Every given filter must match. `cicd_job`: `service_id` (number),
    /// `status`, `job_type`, `repo` (`repo_id` or `repo_name`);
    /// `xds_activity`: `source_id` (number), `schema_id`, `status_type`
    /// (the message's), and `important_change: true` (only messages that set,
    /// change or clear an important field). Each one value or a list.
    #[schema(value_type = Object)]
    pub filter: Map<String, Value>,
    /// Values for the application's declared parameters.
    #[schema(value_type = Object)]
    pub arguments: Map<String, Value>,
    pub enabled: bool,
}

impl TriggerSpec {
    pub fn parse(body: &Value) -> Result<TriggerSpec, Invalid> {
        let Value::Object(obj) = body else {
            return Err(Invalid::one("body", "type", format!("a trigger must be a JSON object, not {}", kind(body))));
        };
        let mut v = Violations::default();
        let known: Vec<&str> = KEYS.iter().chain(READ_BACK.iter()).copied().collect();
        unknown_keys(obj, &known, "", "a trigger", &mut v);
        let name = named(obj, "name", &mut v);
        // A trigger runs an application, or (`"flow": NAME`) a record flow;
        // a flow's trigger reads back as application `.flow.NAME`.
        let application = match (obj.get("application"), obj.get("flow")) {
            (Some(_), Some(_)) => {
                v.push("flow", "conflict", "give application or flow, not both");
                None
            }
            (None, Some(_)) => named(obj, "flow", &mut v).map(|f| format!("{FLOW_PREFIX}{f}")),
            (Some(Value::String(a)), None) if a.starts_with(FLOW_PREFIX) => {
                let mut alias = obj.clone();
                alias.insert("flow".into(), Value::String(a[FLOW_PREFIX.len()..].to_string()));
                named(&alias, "flow", &mut v).map(|f| format!("{FLOW_PREFIX}{f}"))
            }
            _ => named(obj, "application", &mut v),
        };
        if application.as_deref().is_some_and(|a| a.starts_with(FLOW_PREFIX))
            && obj.get("arguments").is_some_and(|a| a.as_object().is_some_and(|m| !m.is_empty()))
        {
            v.push("arguments", "conflict", "a flow has no parameters; its hooks get the event as options.event");
        }
        let event = match obj.get("event") {
            Some(Value::String(e)) if EVENTS.contains(&e.as_str()) => Some(e.clone()),
            Some(Value::String(_)) => {
                v.push("event", "one_of", "must be \"cicd_job\" or \"xds_activity\"");
                None
            }
            None => {
                v.push("event", "required", "name the event kind: \"cicd_job\" or \"xds_activity\"");
                None
            }
            Some(other) => {
                v.push("event", "type", format!("must be a string, not {}", kind(other)));
                None
            }
        };
        let company_id = match obj.get("company_id") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some_and(|c| c > 0) => n.as_i64(),
            Some(other) => {
                v.push("company_id", "type", format!("must be a positive integer, not {other}"));
                None
            }
        };
        let object = |key: &str, v: &mut Violations| match obj.get(key) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                v.push(key, "type", format!("must be an object, not {}", kind(other)));
                Map::new()
            }
        };
        let filter = object("filter", &mut v);
        let xds = event.as_deref() == Some("xds_activity");
        for (key, value) in &filter {
            let field = format!("filter.{key}");
            if xds {
                if !XDS_FILTERS.contains(&key.as_str()) {
                    v.push(
                        &field,
                        "unknown_field",
                        "filters are source_id, schema_id, status_type and important_change",
                    );
                } else if key == "important_change" {
                    if !value.is_boolean() {
                        v.push(&field, "type", "must be true or false");
                    }
                } else {
                    let values: Vec<&Value> = match value {
                        Value::Array(items) => items.iter().collect(),
                        one => vec![one],
                    };
                    if values.is_empty() {
                        v.push(&field, "required", "a list of accepted values must not be empty");
                    }
                    for x in values {
                        let ok = match key.as_str() {
                            "source_id" => x.as_i64().is_some(),
                            "status_type" => x.as_str().is_some_and(|s| STATUS_TYPES.contains(&s)),
                            _ => x.is_string(),
                        };
                        if !ok {
                            v.push(&field, "type", format!("{x} is not an accepted {key}"));
                        }
                    }
                }
                continue;
            }
            if !CICD_FILTERS.contains(&key.as_str()) {
                v.push(&field, "unknown_field", "filters are service_id, status, job_type and repo");
                continue;
            }
            let values: Vec<&Value> = match value {
                Value::Array(items) if !items.is_empty() => items.iter().collect(),
                Value::Array(_) => {
                    v.push(&field, "required", "a list of accepted values must not be empty");
                    continue;
                }
                one => vec![one],
            };
            for x in values {
                let ok = match key.as_str() {
                    "service_id" => x.as_i64().is_some(),
                    "status" => x.as_str().is_some_and(|s| STATUSES.contains(&s)),
                    _ => x.is_string(),
                };
                if !ok {
                    let want = match key.as_str() {
                        "service_id" => "an integer",
                        "status" => "one of \"Succeeded\", \"Failed\", \"On Hold\"",
                        _ => "a string",
                    };
                    v.push(&field, "type", format!("each value must be {want}, not {x}"));
                }
            }
        }
        let arguments = object("arguments", &mut v);
        for (key, value) in &arguments {
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                v.push(format!("arguments.{key}"), "type", "must be a string, number or boolean");
            }
        }
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                v.push("enabled", "type", format!("must be true or false, not {}", kind(other)));
                true
            }
        };
        match (name, application, event) {
            (Some(name), Some(application), Some(event)) if v.is_empty() => {
                Ok(TriggerSpec { name, application, event, company_id, filter, arguments, enabled })
            }
            _ => Err(v.finish(()).err().unwrap_or_else(|| Invalid::one("body", "type", "not a trigger"))),
        }
    }

    /// Whether a CI/CD job of `company` is one this trigger fires on.
    pub fn matches_cicd(&self, company: i64, job: &CicdJob) -> bool {
        if !self.enabled || self.event != "cicd_job" || self.company_id.is_some_and(|c| c != company) {
            return false;
        }
        self.filter.iter().all(|(key, accepted)| {
            let accepts = |x: &Value| match key.as_str() {
                "service_id" => x.as_i64() == Some(job.service_id),
                "status" => x.as_str() == Some(job.status.as_str()),
                "job_type" => x.as_str() == Some(job.job_type.as_str()),
                "repo" => {
                    let s = x.as_str();
                    s.is_some() && (s == job.repo_id.as_deref() || s == job.repo_name.as_deref())
                }
                _ => false,
            };
            match accepted {
                Value::Array(items) => items.iter().any(accepts),
                one => accepts(one),
            }
        })
    }
}

impl TriggerSpec {
    /// Whether an XDS activity message matches: None if not, else whether
    /// the run depends on an important field changing.
    pub fn matches_xds(&self, source_id: i64, schema_id: &str, status_type: Option<&str>) -> Option<bool> {
        if !self.enabled || self.event != "xds_activity" {
            return None;
        }
        let accepts = |key: &str, ok: &dyn Fn(&Value) -> bool| match self.filter.get(key) {
            None => true,
            Some(Value::Array(items)) => items.iter().any(ok),
            Some(one) => ok(one),
        };
        let matched = accepts("source_id", &|x| x.as_i64() == Some(source_id))
            && accepts("schema_id", &|x| x.as_str() == Some(schema_id))
            && accepts("status_type", &|x| status_type.is_some() && x.as_str() == status_type);
        matched.then(|| self.filter.get("important_change").and_then(Value::as_bool).unwrap_or(false))
    }
}

fn named(obj: &Map<String, Value>, key: &str, v: &mut Violations) -> Option<String> {
    match obj.get(key) {
        Some(Value::String(s)) => match crate::name::check_name(key, s) {
            Ok(()) => Some(s.clone()),
            Err(e) => {
                v.add(e);
                None
            }
        },
        None | Some(Value::Null) => {
            v.push(key, "required", format!("{key} is required"));
            None
        }
        Some(other) => {
            v.push(key, "type", format!("must be a string, not {}", kind(other)));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job() -> CicdJob {
        CicdJob::parse(&json!({"job_id": "1", "status": "Succeeded", "commit_sha": "a".repeat(40), "service_id": 2,
            "job_start_time": 1, "job_duration": 2, "repo_name": "web", "job_type": "Production Deploy"}))
        .unwrap()
    }

    #[test]
    fn filters_match_every_given_field() {
        let t = |filter: Value| {
            TriggerSpec::parse(&json!({"name": "t", "application": "a", "event": "cicd_job", "filter": filter}))
                .unwrap()
        };
        assert!(t(json!({})).matches_cicd(1, &job()));
        assert!(t(json!({"service_id": 2, "status": ["Failed", "Succeeded"], "repo": "web"})).matches_cicd(1, &job()));
        assert!(!t(json!({"status": "Failed"})).matches_cicd(1, &job()));
        assert!(!t(json!({"job_type": "Test"})).matches_cicd(1, &job()));
        assert!(!t(json!({"repo": "api"})).matches_cicd(1, &job()));
        let mut scoped = t(json!({}));
        scoped.company_id = Some(7);
        assert!(!scoped.matches_cicd(1, &job()));
        assert!(scoped.matches_cicd(7, &job()));
        scoped.enabled = false;
        assert!(!scoped.matches_cicd(7, &job()));
    }

    #[test]
    fn xds_filters_match_source_schema_status_and_important_changes() {
        let t = TriggerSpec::parse(&json!({"name": "t", "application": "a", "event": "xds_activity",
            "filter": {"schema_id": ["deploy", "build"], "status_type": "fail", "important_change": true}}))
        .unwrap();
        assert_eq!(t.matches_xds(1, "deploy", Some("fail")), Some(true));
        assert_eq!(t.matches_xds(1, "deploy", Some("open")), None);
        assert_eq!(t.matches_xds(1, "deploy", None), None);
        assert_eq!(t.matches_xds(1, "other", Some("fail")), None);
        assert!(!t.matches_cicd(1, &job()));
        let any = TriggerSpec::parse(&json!({"name": "t", "application": "a", "event": "xds_activity"})).unwrap();
        assert_eq!(any.matches_xds(3, "x", None), Some(false));
        let err = TriggerSpec::parse(&json!({"name": "t", "application": "a", "event": "xds_activity",
            "filter": {"status": "Failed", "status_type": "broken", "important_change": "yes"}}))
        .unwrap_err();
        let mut got: Vec<(String, String)> = err.0.into_iter().map(|v| (v.field, v.rule)).collect();
        got.sort();
        assert_eq!(
            got,
            [("filter.important_change", "type"), ("filter.status", "unknown_field"), ("filter.status_type", "type")]
                .iter()
                .map(|(f, r)| (f.to_string(), r.to_string()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_triggers_name_every_field() {
        let err = TriggerSpec::parse(&json!({"name": "bad name/", "event": "build", "filter": {"status": "Done",
            "colour": "red", "service_id": "2"}, "arguments": {"x": {}}, "company_id": -1, "enabled": "yes", "extra": 1}))
        .unwrap_err();
        let mut got: Vec<(String, String)> = err.0.into_iter().map(|v| (v.field, v.rule)).collect();
        got.sort();
        let mut want: Vec<(String, String)> = [
            ("extra", "unknown_field"),
            ("name", "name_syntax"),
            ("application", "required"),
            ("event", "one_of"),
            ("company_id", "type"),
            ("filter.colour", "unknown_field"),
            ("filter.service_id", "type"),
            ("filter.status", "type"),
            ("arguments.x", "type"),
            ("enabled", "type"),
        ]
        .iter()
        .map(|(f, r)| (f.to_string(), r.to_string()))
        .collect();
        want.sort();
        assert_eq!(got, want);
    }
}
