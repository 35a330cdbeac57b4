//! Secret values (masked parameters, encrypted configuration values) are
//! replaced by `********` in everything a script's execution reports.

use aho_corasick::{AhoCorasick, MatchKind};

pub const MASK: &str = "********";

#[derive(Debug, Default)]
pub struct Redactor(Option<AhoCorasick>);

impl Redactor {
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Redactor {
        let patterns: Vec<&str> = secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()).collect();
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
    }
}
