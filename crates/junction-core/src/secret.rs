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

/// Refuses a document that would store in clear an entry that is sealed
/// now. `entries` yields (index, name, encrypted) for each entry of the list
/// at `list_field` (`app_variables`, `configuration_data`).
pub fn check_unmasking<'a>(
    previously_encrypted: &[String],
    list_field: &str,
    entries: impl Iterator<Item = (usize, &'a str, bool)>,
) -> Result<(), crate::Invalid> {
    let mut v = crate::validation::Violations::default();
    for (i, name, encrypted) in entries {
        if !encrypted && previously_encrypted.iter().any(|p| p == name) {
            v.push(
                format!("{list_field}[{i}].encrypted"),
                "stays_encrypted",
                format!("{name:?} is encrypted; an encrypted value can never be turned back to plain text"),
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
    fn unmasking_is_refused_naming_the_entry() {
        let before = vec!["pw".to_string(), "key".to_string()];
        let entries = [(0, "user", false), (1, "pw", false), (2, "key", true)];
        let err = check_unmasking(&before, "configuration_data", entries.into_iter()).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].field, "configuration_data[1].encrypted");
        assert_eq!(err.0[0].rule, "stays_encrypted");
        let fine = [(0, "pw", true), (1, "new", false)];
        assert!(check_unmasking(&before, "configuration_data", fine.into_iter()).is_ok());
    }
}
