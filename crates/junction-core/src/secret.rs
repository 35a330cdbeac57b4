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

/// The rule every masked value follows: once an entry is encrypted it can
/// never be stored in clear again under the same name. Returns the names of
/// `previously_encrypted` entries that `plain_now` would unmask.
pub fn unmasked<'a>(previously_encrypted: &'a [String], plain_now: &[&str]) -> Vec<&'a str> {
    previously_encrypted
        .iter()
        .map(String::as_str)
        .filter(|name| plain_now.contains(name))
        .collect()
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
    fn unmasking_is_detected_by_name() {
        let before = vec!["pw".to_string(), "key".to_string()];
        assert_eq!(unmasked(&before, &["pw", "user"]), vec!["pw"]);
        assert!(unmasked(&before, &["user"]).is_empty());
    }
}
