//! Saved step data as it may be shown: the run's secret values masked in
//! every string of it (object keys too). The data a step saves is what the
//! next steps need, so the full data is kept sealed beside the masked copy
//! (see the worker's finish).

use aho_corasick::{AhoCorasick, MatchKind};
use junction_runtime::MASK;
use serde_json::{Map, Value};

/// Finds and masks an execution's secret values in saved data. Works on
/// the JSON tree, string by string (a secret with `"` or `\` is matched as
/// written, not in its escaped serialized form).
#[derive(Debug, Default)]
pub(crate) struct DataRedactor {
    finder: Option<AhoCorasick>,
    /// Whether a number's text can hold a secret (some secret is made of
    /// digits, signs, points and exponents only); numbers are skipped if not.
    numeric: bool,
}

impl DataRedactor {
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> DataRedactor {
        let mut patterns: Vec<&str> = secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()).collect();
        patterns.sort_unstable();
        patterns.dedup();
        if patterns.is_empty() {
            return DataRedactor::default();
        }
        let numeric = patterns.iter().any(|p| p.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)));
        // Leftmost-longest: a secret that contains another is masked whole.
        let finder = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns).ok();
        DataRedactor { finder, numeric }
    }

    /// `None` when `data` holds none of the secrets (the common case: one
    /// scan, no copy); otherwise the masked copy.
    pub fn redact(&self, data: &Value) -> Option<Value> {
        let finder = self.finder.as_ref()?;
        self.holds(finder, data).then(|| self.masked(finder, data))
    }

    fn holds(&self, finder: &AhoCorasick, value: &Value) -> bool {
        match value {
            Value::String(s) => finder.is_match(s),
            Value::Number(n) => self.numeric && finder.is_match(&n.to_string()),
            Value::Array(items) => items.iter().any(|v| self.holds(finder, v)),
            Value::Object(map) => map.iter().any(|(k, v)| finder.is_match(k) || self.holds(finder, v)),
            Value::Null | Value::Bool(_) => false,
        }
    }

    fn masked(&self, finder: &AhoCorasick, value: &Value) -> Value {
        let mask = |s: &str| finder.replace_all(s, &vec![MASK; finder.patterns_len()]);
        match value {
            Value::String(s) if finder.is_match(s) => Value::String(mask(s)),
            Value::Number(n) if self.numeric => {
                let text = n.to_string();
                if finder.is_match(&text) {
                    Value::String(mask(&text))
                } else {
                    value.clone()
                }
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.masked(finder, v)).collect()),
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, v) in map {
                    let key = if finder.is_match(k) { mask(k) } else { k.clone() };
                    out.insert(key, self.masked(finder, v));
                }
                Value::Object(out)
            }
            _ => value.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_without_secrets_is_left_alone() {
        let data = json!({"a": [1, "two", {"three": null}], "n": 1234});
        assert_eq!(DataRedactor::new(&["hunter2"]).redact(&data), None);
        assert_eq!(DataRedactor::new::<&str>(&[]).redact(&data), None);
        assert_eq!(DataRedactor::new(&[""]).redact(&data), None);
    }

    #[test]
    fn every_string_key_and_number_holding_a_secret_is_masked() {
        let pw = r#"pa"ss\wd"#;
        let data = json!({"pw": pw, "list": [format!("x{pw}y"), "plain"], pw: "as key", "pin": 4711,
                          "deep": {"k": [{"v": format!("{pw}{pw}")}]}, "b": true});
        let r = DataRedactor::new(&[pw, "4711"]);
        assert_eq!(
            r.redact(&data),
            Some(json!({"pw": "********", "list": ["x********y", "plain"], "********": "as key", "pin": "********",
                        "deep": {"k": [{"v": "****************"}]}, "b": true}))
        );
        assert_eq!(DataRedactor::new(&["hunter2", "hunter22"]).redact(&json!("hunter22")), Some(json!("********")));
    }
}
