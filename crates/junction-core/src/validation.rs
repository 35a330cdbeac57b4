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

/// The most violations one answer (or recorded refusal) lists; a document
/// can break a rule thousands of times, and an answer of a megabyte helps
/// nobody. The rest are counted, see [`listed`].
pub const MAX_LISTED: usize = 100;

/// The rule of the entry that stands for the violations not listed.
pub const MORE_VIOLATIONS: &str = "more_violations";

fn summary(v: &[Violation]) -> String {
    match v {
        [] => "invalid input".to_string(),
        [one] => format!("{}: {}", one.field, one.message),
        [first, ..] if v.len() > MAX_LISTED => format!(
            "{} violations; the first {MAX_LISTED} are listed, starting with {}: {}",
            v.len(),
            first.field,
            first.message
        ),
        [first, rest @ ..] => format!("{}: {} (and {} more)", first.field, first.message, rest.len()),
    }
}

/// The violations to list: all of them when there are at most
/// [`MAX_LISTED`]; otherwise the first [`MAX_LISTED`] and one last entry
/// (field `body`, rule `more_violations`) saying how many more there are.
pub fn listed(v: &[Violation]) -> Vec<Violation> {
    if v.len() <= MAX_LISTED {
        return v.to_vec();
    }
    let mut out = v[..MAX_LISTED].to_vec();
    let more = v.len() - MAX_LISTED;
    let (noun, verb) = if more == 1 { ("violation", "is") } else { ("violations", "are") };
    out.push(Violation::new(
        "body",
        MORE_VIOLATIONS,
        format!("{more} more {noun} {verb} not listed ({} in all)", v.len()),
    ));
    out
}

impl Invalid {
    pub fn one(field: impl Into<String>, rule: &str, message: impl Into<String>) -> Self {
        Self(vec![Violation::new(field, rule, message)])
    }

    /// The violations an answer lists (see [`listed`]).
    pub fn listed(&self) -> Vec<Violation> {
        listed(&self.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn many(n: usize) -> Invalid {
        Invalid((0..n).map(|i| Violation::new(format!("f{i}"), "unknown_field", format!("f{i} is unknown"))).collect())
    }

    #[test]
    fn at_most_a_hundred_violations_are_listed_and_the_rest_counted() {
        assert_eq!(many(1).to_string(), "f0: f0 is unknown");
        assert_eq!(many(100).to_string(), "f0: f0 is unknown (and 99 more)");
        assert_eq!(many(100).listed(), many(100).0);
        let big = many(10_000);
        assert_eq!(big.to_string(), "10000 violations; the first 100 are listed, starting with f0: f0 is unknown");
        let shown = big.listed();
        assert_eq!(shown.len(), MAX_LISTED + 1);
        assert_eq!(shown[..MAX_LISTED], big.0[..MAX_LISTED]);
        assert_eq!(
            shown[MAX_LISTED],
            Violation::new("body", MORE_VIOLATIONS, "9900 more violations are not listed (10000 in all)")
        );
        assert_eq!(many(101).listed()[100].message, "1 more violation is not listed (101 in all)");
    }
}
