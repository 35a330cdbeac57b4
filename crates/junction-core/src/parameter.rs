//! Spec 000's parameters (global and per job): a name, a type `string` or
//! `masked` ("String (Masked)"), and a value. Junction stores global
//! parameters as the reserved configuration [`GLOBAL`], a masked parameter
//! being an encrypted entry.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::configuration::{Configuration, ConfigurationUpload, GLOBAL};
use crate::name::check_variable_name;
use crate::validation::{Invalid, Violations};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    /// "String": the value is shown.
    String,
    /// "String (Masked)": write-only once saved, and never turned back.
    Masked,
}

/// One parameter as the API shows it and takes it. A masked parameter is
/// always shown with `"value": null`; sending it back with `null` keeps the
/// stored value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    #[serde(default)]
    pub value: Option<String>,
}

/// Turns the whole list of global parameters into the `global`
/// configuration it is stored as.
pub fn global_parameters_to_configuration(params: &[Parameter]) -> Result<ConfigurationUpload, Invalid> {
    let mut v = Violations::default();
    let mut seen = BTreeSet::new();
    for (i, p) in params.iter().enumerate() {
        if let Err(e) = check_variable_name(&format!("[{i}].name"), &p.name) {
            v.add(e);
        }
        if !seen.insert(p.name.as_str()) {
            v.push(format!("[{i}].name"), "unique", format!("another parameter is already named {:?}", p.name));
        }
    }
    v.finish(())?;
    let data: Vec<Value> = params
        .iter()
        .map(|p| json!({"name": p.name, "value": p.value, "encrypted": p.kind == ParameterType::Masked}))
        .collect();
    Configuration::parse(json!({
        "name": GLOBAL,
        "friendly_name": "Global Parameters",
        "description": "Parameters every script sees (args.globalArguments).",
        "configuration_data": data,
    }))
}

/// The parameters a configuration holds, as spec 000 shows them.
pub fn parameters_of(config: &Configuration) -> Vec<Parameter> {
    config
        .entries()
        .iter()
        .map(|e| Parameter {
            name: e.name.clone(),
            kind: if e.encrypted { ParameterType::Masked } else { ParameterType::String },
            value: match &e.value {
                _ if e.encrypted => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                None => None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{SecretString, SecretWrite};

    #[test]
    fn global_parameters_round_trip_without_masked_values() {
        let params = vec![
            Parameter { name: "JiraUrl".into(), kind: ParameterType::String, value: Some("http://jira".into()) },
            Parameter { name: "JiraToken".into(), kind: ParameterType::Masked, value: Some("t0k3n".into()) },
        ];
        let up = global_parameters_to_configuration(&params).unwrap();
        assert_eq!(up.configuration.name(), GLOBAL);
        assert_eq!(up.secrets, vec![("JiraToken".to_string(), SecretWrite::Set(SecretString::new("t0k3n")))]);
        let shown = parameters_of(&up.configuration);
        assert_eq!(shown[0], params[0]);
        assert_eq!(shown[1], Parameter { name: "JiraToken".into(), kind: ParameterType::Masked, value: None });
    }

    #[test]
    fn duplicate_and_bad_names_are_refused() {
        let p = |n: &str| Parameter { name: n.into(), kind: ParameterType::String, value: None };
        let err = global_parameters_to_configuration(&[p("a"), p("a"), p("")]).unwrap_err();
        let got: Vec<_> = err.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        assert_eq!(got, [("[1].name", "unique"), ("[2].name", "required")]);
    }
}
