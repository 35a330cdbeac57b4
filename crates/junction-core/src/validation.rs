//! The one shape of "this input is wrong": every violation names the field
//! (a JSON path such as `steps[2].retry_max`) and the rule it broke, so the
//! HTTP layer can answer with all of them at once.

use serde::Serialize;
use utoipa::ToSchema;

/// One broken rule on one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Violation {
    /// JSON path of the offending value, e.g. `steps[0].output_to[1]`.
    pub field: String,
    /// Stable snake_case name of the rule, e.g. `required`, `unknown_step`.
    pub rule: String,
    /// A sentence for people.
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, rule: &str, message: impl Into<String>) -> Self {
        Self { field: field.into(), rule: rule.to_string(), message: message.into() }
    }
}

/// Input refused: one or more violations, never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.0))]
pub struct Invalid(pub Vec<Violation>);

fn summary(v: &[Violation]) -> String {
    match v {
        [] => "invalid input".to_string(),
        [one] => format!("{}: {}", one.field, one.message),
        [first, rest @ ..] => format!("{}: {} (and {} more)", first.field, first.message, rest.len()),
    }
}

impl Invalid {
    pub fn one(field: impl Into<String>, rule: &str, message: impl Into<String>) -> Self {
        Self(vec![Violation::new(field, rule, message)])
    }
}

/// Collects violations while a document is walked, so a caller sees every
/// problem in one answer rather than the first one only.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn push(&mut self, field: impl Into<String>, rule: &str, message: impl Into<String>) {
        self.0.push(Violation::new(field, rule, message));
    }

    pub fn add(&mut self, v: Violation) {
        self.0.push(v);
    }

    pub fn extend(&mut self, other: Invalid) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(value)` when nothing was collected.
    pub fn finish<T>(self, value: T) -> Result<T, Invalid> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Invalid(self.0))
        }
    }
}

/// Deserializes `value` into `T`, reporting a type error with the JSON path
/// of the value that did not fit (`steps[1].retry_max`), prefixed by `base`.
pub fn from_json<T: serde::de::DeserializeOwned>(base: &str, value: serde_json::Value) -> Result<T, Invalid> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (base.is_empty(), path.as_str()) {
            (_, ".") | (_, "") => base.to_string(),
            (true, p) => p.to_string(),
            (false, p) => format!("{base}.{p}"),
        };
        let field = if field.is_empty() { "body".to_string() } else { field };
        Invalid::one(field, "type", e.into_inner().to_string())
    })
}
