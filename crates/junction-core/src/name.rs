//! Names of stored things (steps, applications, configurations, tokens,
//! parameters). They appear in URL paths, file names inside runtimes and
//! `${...}` substitutions, so they are kept to a small safe alphabet: no
//! slashes, no dots at the start, nothing that could walk a path.

use crate::validation::Violation;

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a resource name: 1..=128 characters from `A-Z a-z 0-9 _ - .`,
/// starting with a letter, digit or underscore.
pub fn check_name(field: &str, name: &str) -> Result<(), Violation> {
    let rule = |msg: String| Err(Violation::new(field, "name_syntax", msg));
    if name.is_empty() {
        return Err(Violation::new(field, "required", "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return rule(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    let first = name.chars().next().unwrap_or('.');
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return rule("must start with a letter, a digit or '_'".into());
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return rule(format!("may contain only letters, digits, '_', '-' and '.'; found {bad:?}"));
    }
    Ok(())
}

/// Checks a variable or parameter name as scripts use it
/// (`args.arguments.NAME`, `${appvar.NAME}`): an identifier-like word.
pub fn check_variable_name(field: &str, name: &str) -> Result<(), Violation> {
    if name.is_empty() {
        return Err(Violation::new(field, "required", "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Violation::new(field, "name_syntax", format!("must be at most {MAX_NAME_LEN} characters")));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '$' | '{' | '}' | '/' | '\\')) {
        return Err(Violation::new(
            field,
            "name_syntax",
            "must not contain whitespace, control characters, '$', braces or slashes",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["a", "jira_sync", "Jira-Sync.v2", "_private", "0day", &"x".repeat(128)] {
            assert_eq!(check_name("name", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_path_like_and_empty_names() {
        let cases = [
            ("", "required"),
            ("../etc", "name_syntax"),
            ("a/b", "name_syntax"),
            (".hidden", "name_syntax"),
            ("-flag", "name_syntax"),
            ("with space", "name_syntax"),
            ("naïve", "name_syntax"),
            ("a\0b", "name_syntax"),
        ];
        for (bad, rule) in cases {
            let v = check_name("name", bad).unwrap_err();
            assert_eq!(v.rule, rule, "{bad:?}");
            assert_eq!(v.field, "name");
        }
        assert_eq!(check_name("name", &"x".repeat(129)).unwrap_err().rule, "name_syntax");
    }

    #[test]
    fn variable_names_allow_spec_style_words_but_not_substitution_syntax() {
        for ok in ["JiraUrl", "jira.url", "API-KEY", "ärger"] {
            assert_eq!(check_variable_name("v", ok), Ok(()));
        }
        for bad in ["", "a b", "${x}", "a/b", "tab\t"] {
            assert!(check_variable_name("v", bad).is_err(), "{bad:?}");
        }
    }
}
