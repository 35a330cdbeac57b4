//! Configurations (spec 004): named sets of variables, each plain or
//! `encrypted`. The reserved configuration `global` holds spec 000's Global
//! Parameters.
//!
//! As with applications, the document is kept as written (unknown keys
//! too) minus the clear text of encrypted values, which leave it as
//! [`SecretWrites`] and are sealed by the store.

use serde_json::{Map, Value};

use crate::document;
use crate::secret::SecretWrites;
use crate::validation::{Invalid, Violations};

/// The configuration every script sees (spec 000's Global Parameters).
pub const GLOBAL: &str = "global";

/// Keys Junction adds when a configuration is read back; ignored on upload.
pub const SERVER_KEYS: [&str; 2] = ["created_at", "updated_at"];

/// One variable of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for encrypted entries (their value is sealed in the store) and
    /// for entries stored with a null value.
    pub value: Option<Value>,
    pub encrypted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    document: Map<String, Value>,
    entries: Vec<ConfigEntry>,
}

#[derive(Debug, Clone)]
pub struct ConfigurationUpload {
    pub configuration: Configuration,
    pub secrets: SecretWrites,
}

impl Configuration {
    pub fn parse(body: Value) -> Result<ConfigurationUpload, Invalid> {
        let mut v = Violations::default();
        let mut doc = document::object(body, "a configuration", &SERVER_KEYS)?;
        document::document_name(&doc, "a configuration", &mut v);
        for key in ["friendly_name", "description", "author"] {
            document::string(&doc, key, key, None, &mut v);
        }
        let mut entries = Vec::new();
        let mut secrets = Vec::new();
        let required = "a configuration needs a configuration_data array (it may be empty)";
        for mut entry in
            document::named_entries(doc.get_mut("configuration_data"), "configuration_data", Some(required), &mut v)
        {
            let field = format!("configuration_data[{}].encrypted", entry.index);
            let encrypted = document::opt_bool(entry.obj, "encrypted", &field, &mut v).unwrap_or(false);
            let value = if encrypted {
                document::take_encrypted_value(&mut entry, "configuration_data", &mut secrets, &mut v);
                None
            } else {
                entry.obj.get("value").filter(|x| !x.is_null()).cloned()
            };
            entries.push(ConfigEntry { name: entry.name, value, encrypted });
        }
        v.finish(ConfigurationUpload { configuration: Configuration { document: doc, entries }, secrets })
    }

    pub fn from_stored(document: Value) -> Result<Configuration, Invalid> {
        Ok(Configuration::parse(document)?.configuration)
    }

    pub fn name(&self) -> &str {
        self.document.get("name").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn friendly_name(&self) -> Option<&str> {
        self.document.get("friendly_name").and_then(Value::as_str)
    }

    pub fn description(&self) -> Option<&str> {
        self.document.get("description").and_then(Value::as_str)
    }

    pub fn entries(&self) -> &[ConfigEntry] {
        &self.entries
    }

    /// The document as stored and shown: encrypted entries have
    /// `"value": null`.
    pub fn document(&self) -> &Map<String, Value> {
        &self.document
    }

    /// Checks this document's encrypted entries against what is sealed
    /// now (see [`crate::secret::check_against_sealed`]).
    pub fn check_against_sealed(&self, sealed_now: &[String], writes: &SecretWrites) -> Result<(), Invalid> {
        let entries = self.entries.iter().enumerate().map(|(i, e)| (i, e.name.as_str(), e.encrypted));
        crate::secret::check_against_sealed(sealed_now, writes, "configuration_data", entries)
    }

    /// Names of the entries stored in clear.
    pub fn plain_names(&self) -> Vec<&str> {
        self.entries.iter().filter(|e| !e.encrypted).map(|e| e.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::secret::{SecretString, SecretWrite};

    #[test]
    fn accepts_the_spec_example_and_strips_encrypted_values() {
        let up = Configuration::parse(json!({
            "author": "ScienceLogic, Inc.",
            "description": "Fsun's config for demo.",
            "name": "fsun-demo-settings",
            "friendly_name": "Demo Settings",
            "configuration_data": [
                {"encrypted": false, "name": "em7_host", "value": "10.2.11.42"},
                {"encrypted": false, "name": "em7_user", "value": "em7admin"},
                {"encrypted": true, "name": "em7_password", "value": "em7pass"}
            ]
        }))
        .unwrap();
        let c = &up.configuration;
        assert_eq!(c.name(), "fsun-demo-settings");
        assert_eq!(c.plain_names(), ["em7_host", "em7_user"]);
        assert_eq!(
            c.document()["configuration_data"][2],
            json!({"encrypted": true, "name": "em7_password", "value": null})
        );
        assert_eq!(up.secrets, vec![("em7_password".to_string(), SecretWrite::Set(SecretString::new("em7pass")))]);
    }

    #[test]
    fn reports_each_bad_entry() {
        let err = Configuration::parse(json!({"name": "c", "configuration_data": [
            {"name": "a", "encrypted": "yes"},
            {"value": 1},
            {"name": "a"},
            {"name": "p", "encrypted": true, "value": {"x": 1}},
        ]}))
        .unwrap_err();
        let got: Vec<_> = err.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        assert_eq!(
            got,
            [
                ("configuration_data[1].name", "required"),
                ("configuration_data[2].name", "unique"),
                ("configuration_data[0].encrypted", "type"),
                ("configuration_data[3].value", "type"),
            ]
        );
        let err = Configuration::parse(json!({"name": "bad name"})).unwrap_err();
        assert_eq!(err.0.len(), 2);
    }
}
