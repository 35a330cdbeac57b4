//! Plaintext secrets in memory. The type exists so a secret cannot be
//! printed, logged or serialized by accident: its `Debug` is a mask and it
//! has no `Serialize`.

/// A secret value on its way to being sealed (or just unsealed for a
/// runtime). Clear text lives only inside this type.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The clear text. Call sites are few and reviewed: sealing, and handing
    /// a value to a runtime.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(***)")
    }
}

/// What an upload says about one encrypted entry: a new clear value to
/// seal, or "keep what is stored" (the entry was sent back with
/// `"value": null`, as every read shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretWrite {
    Set(SecretString),
    Keep,
}

/// The encrypted entries of one document (a configuration or an
/// application's variables), by entry name, in document order.
pub type SecretWrites = Vec<(String, SecretWrite)>;

/// Checks a document's encrypted entries against what is sealed now.
/// `entries` yields (index, name, encrypted) for each entry of the list at
/// `list_field` (`app_variables`, `configuration_data`). Refused:
/// - an entry sealed now that the document would store in clear
///   (`stays_encrypted`): a masked value never becomes plain again;
/// - an encrypted entry sent with `"value": null` ("keep") when nothing is
///   sealed under its name (`value_required`): there is nothing to keep.
pub fn check_against_sealed<'a>(
    sealed_now: &[String],
    writes: &SecretWrites,
    list_field: &str,
    entries: impl Iterator<Item = (usize, &'a str, bool)>,
) -> Result<(), crate::Invalid> {
    let mut v = crate::validation::Violations::default();
    for (i, name, encrypted) in entries {
        let is_sealed = sealed_now.iter().any(|p| p == name);
        if !encrypted && is_sealed {
            v.push(
                format!("{list_field}[{i}].encrypted"),
                "stays_encrypted",
                format!("{name:?} is encrypted; an encrypted value can never be turned back to plain text"),
            );
        }
        let keeps = writes.iter().any(|(n, w)| n == name && *w == SecretWrite::Keep);
        if encrypted && keeps && !is_sealed {
            v.push(
                format!("{list_field}[{i}].value"),
                "value_required",
                format!("{name:?} is encrypted but has no stored value to keep; give its value"),
            );
        }
    }
    v.finish(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "SecretString(***)");
        assert_eq!(format!("{:?}", SecretWrite::Set(s)), "Set(SecretString(***))");
    }

    #[test]
    fn unmasking_and_keeping_nothing_are_refused_naming_the_entry() {
        let before = vec!["pw".to_string(), "key".to_string()];
        let writes: SecretWrites = vec![("key".into(), SecretWrite::Keep), ("fresh".into(), SecretWrite::Keep)];
        let entries = [(0, "user", false), (1, "pw", false), (2, "key", true), (3, "fresh", true)];
        let err = check_against_sealed(&before, &writes, "configuration_data", entries.into_iter()).unwrap_err();
        let got: Vec<_> = err.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        assert_eq!(
            got,
            [("configuration_data[1].encrypted", "stays_encrypted"), ("configuration_data[3].value", "value_required")]
        );
        let writes: SecretWrites =
            vec![("pw".into(), SecretWrite::Keep), ("new".into(), SecretWrite::Set(SecretString::new("v")))];
        let fine = [(0, "pw", true), (1, "new", true), (2, "other", false)];
        assert!(check_against_sealed(&before, &writes, "configuration_data", fine.into_iter()).is_ok());
    }
}
