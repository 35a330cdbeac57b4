//! Secret values (masked parameters, encrypted configuration values) are
//! replaced by `********` in everything a script's execution reports.

use aho_corasick::{AhoCorasick, MatchKind};

pub const MASK: &str = "********";

#[derive(Debug, Default)]
pub struct Redactor(Option<AhoCorasick>);

impl Redactor {
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Redactor {
        // The secret as written, and as JSON and util.inspect escape it
        // (a logged object shows `pass\"word` for `pass"word`).
        let mut patterns: Vec<String> = Vec::new();
        for s in secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()) {
            let json = serde_json::to_string(s).unwrap_or_default();
            let escaped = json.trim_matches('"').to_string();
            let single = s.replace('\\', "\\\\").replace('\'', "\\'");
            for form in [s.to_string(), escaped, single] {
                if !patterns.contains(&form) {
                    patterns.push(form);
                }
            }
        }
        if patterns.is_empty() {
            return Redactor(None);
        }
        // Leftmost-longest: a secret that contains another is masked whole.
        let ac = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns).ok();
        Redactor(ac)
    }

    pub fn apply(&self, text: &str) -> String {
        match &self.0 {
            Some(ac) => ac.replace_all(text, &vec![MASK; ac.patterns_len()]),
            None => text.to_string(),
        }
    }
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
}
