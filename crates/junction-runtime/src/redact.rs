//! Secret values (masked parameters, encrypted configuration values) are
//! replaced by `********` in everything a script's execution reports. The
//! harnesses mask values before they format them; this is the second line,
//! on the text, and it knows the forms Node's `util.inspect`, JSON and
//! Python's `repr` print a string in.

use aho_corasick::{AhoCorasick, MatchKind};

pub const MASK: &str = "********";

#[derive(Debug, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// One replacement per pattern.
    with: Vec<String>,
    patterns: Vec<String>,
}

impl Redactor {
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Redactor {
        let mut r = Redactor::default();
        for s in secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()) {
            for form in printed_forms(s) {
                r.add(form, MASK);
            }
        }
        r.build()
    }

    /// Also replaces the runtime's own directories (a traceback's paths),
    /// so a log shows `ipaascore/BaseStep.py`, not where the server keeps it.
    pub fn hiding_paths(mut self, paths: &[String]) -> Redactor {
        for p in paths.iter().filter(|p| p.len() > 1) {
            for (sub, shown) in [("/assets/python/", ""), ("/assets/node/", ""), ("/", "")] {
                self.add(format!("{p}{sub}"), shown);
            }
            self.add(p.clone(), "<runtime>");
        }
        self.build()
    }

    fn add(&mut self, pattern: String, with: &str) {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
            self.with.push(with.to_string());
        }
    }

    fn build(mut self) -> Redactor {
        // Leftmost-longest: a secret that contains another is masked whole.
        self.matcher = match self.patterns.is_empty() {
            true => None,
            false => AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&self.patterns).ok(),
        };
        self
    }

    pub fn apply(&self, text: &str) -> String {
        match &self.matcher {
            Some(ac) => ac.replace_all(text, &self.with),
            None => text.to_string(),
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
        let r = Redactor::new(&["s3"]).hiding_paths(&["/tmp/junction-run-x".to_string()]);
        assert_eq!(
            r.apply("File \"/tmp/junction-run-x/assets/python/ipaascore/BaseStep.py\", line 3 s3"),
            "File \"ipaascore/BaseStep.py\", line 3 ********"
        );
        assert_eq!(r.apply("at /tmp/junction-run-x/work/p-1/exec-2/x"), "at work/p-1/exec-2/x");
    }
}
