//! Secret values (masked parameters, encrypted configuration values) are
//! replaced by `********` in everything a script's execution reports. The
//! harnesses mask values before they format them; this is the second line,
//! on the text, and it knows the forms Node's `util.inspect`, JSON and
//! Python's `repr` print a string in.

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::{Map, Value};

pub const MASK: &str = "********";

#[derive(Debug, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// One replacement per pattern.
    with: Vec<String>,
    patterns: Vec<String>,
}

impl Redactor {
    #[cfg(test)]
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Redactor {
        Redactor::with_paths(secrets, &[])
    }

    /// Also replaces the runtime's own directories (a traceback's paths),
    /// so a log shows `ipaascore/BaseStep.py`, not where the server keeps it.
    /// The automaton is built once, here.
    pub fn with_paths<S: AsRef<str>>(secrets: &[S], paths: &[String]) -> Redactor {
        let mut r = Redactor::default();
        for s in secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()) {
            for form in printed_forms(s) {
                r.add(form, MASK);
            }
        }
        r.hide(paths);
        r.build()
    }

    fn hide(&mut self, paths: &[String]) {
        for p in paths.iter().filter(|p| p.len() > 1) {
            for (sub, shown) in [("/assets/python/", ""), ("/assets/node/", ""), ("/", "")] {
                self.add(format!("{p}{sub}"), shown);
            }
            self.add(p.clone(), "<runtime>");
        }
    }

    fn add(&mut self, pattern: String, with: &str) {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
            self.with.push(with.to_string());
        }
    }

    fn build(mut self) -> Redactor {
        self.matcher = matcher(&self.patterns);
        self
    }

    pub fn apply(&self, text: &str) -> String {
        match &self.matcher {
            Some(ac) => ac.replace_all(text, &self.with),
            None => text.to_string(),
        }
    }
}

/// Leftmost-longest, so a secret that contains another is masked whole;
/// `None` without patterns.
fn matcher<P: AsRef<[u8]>>(patterns: &[P]) -> Option<AhoCorasick> {
    match patterns.is_empty() {
        true => None,
        false => AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(patterns).ok(),
    }
}

/// Saved step data as it may be shown: the execution's secret values
/// masked in every string of it (object keys too). The full data is what
/// the next steps need; the worker keeps it sealed beside the masked copy.
/// Finds and masks an execution's secret values in saved data. Works on
/// the JSON tree, string by string (a secret with `"` or `\` is matched as
/// written, not in its escaped serialized form).
#[derive(Debug, Default)]
pub struct DataRedactor {
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
        let finder = matcher(&patterns);
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

/// `s` as written and as the usual printers quote it: JSON, `util.inspect`
/// in single quotes or in backticks (a string holding both quote kinds),
/// Python's `repr`; control characters as `\xHH` (Node: upper case, Python:
/// lower case) or `\uXXXX` (JSON).
fn printed_forms(s: &str) -> Vec<String> {
    let json = serde_json::to_string(s).unwrap_or_default();
    let json = json[1..json.len() - 1].to_string();
    let mut forms = vec![s.to_string(), json];
    for upper in [true, false] {
        let controls = |c: char, out: &mut String| match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' if upper => out.push_str("\\b"),
            '\u{c}' if upper => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&if upper { format!("\\x{:02X}", c as u32) } else { format!("\\x{:02x}", c as u32) })
            }
            c => out.push(c),
        };
        for quote in ['\'', '`', '"', '\0'] {
            let mut out = String::new();
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => controls(c, &mut out),
                }
            }
            forms.push(out);
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_every_occurrence_of_every_secret() {
        let r = Redactor::new(&["hunter2", "hunter22", ""]);
        assert_eq!(r.apply("pw=hunter22 and hunter2."), "pw=******** and ********.");
        assert_eq!(Redactor::new::<&str>(&[]).apply("plain"), "plain");
        let quoted = Redactor::new(&["pa\"ss'wd"]);
        assert_eq!(quoted.apply(r#"{"pw":"pa\"ss'wd"}"#), r#"{"pw":"********"}"#);
        assert_eq!(quoted.apply("{ pw: 'pa\"ss\\'wd' }"), "{ pw: '********' }");
    }

    #[test]
    fn masks_the_forms_node_and_python_print() {
        // util.inspect picks backticks for a string with both quote kinds.
        let r = Redactor::new(&["Pa'ss\"w\\rd1", "a\u{1b}b\n"]);
        assert_eq!(r.apply("{ k: `Pa'ss\"w\\\\rd1` }"), "{ k: `********` }");
        assert_eq!(r.apply("'Pa\\'ss\"w\\\\rd1'"), "'********'");
        assert_eq!(r.apply("{ k: 'a\\x1Bb\\n' }"), "{ k: '********' }");
        assert_eq!(r.apply("{'k': 'a\\x1bb\\n'}"), "{'k': '********'}");
        assert_eq!(r.apply(r#"{"k":"a\u001bb\n"}"#), r#"{"k":"********"}"#);
    }

    #[test]
    fn hides_the_runtimes_paths() {
        let r = Redactor::with_paths(&["s3"], &["/tmp/junction-run-x".to_string()]);
        assert_eq!(
            r.apply("File \"/tmp/junction-run-x/assets/python/ipaascore/BaseStep.py\", line 3 s3"),
            "File \"ipaascore/BaseStep.py\", line 3 ********"
        );
        assert_eq!(r.apply("at /tmp/junction-run-x/work/p-1/exec-2/x"), "at work/p-1/exec-2/x");
    }

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
