//! `${...}` substitution in step parameters (spec 004) for steps whose
//! runtime does not do it itself (JavaScript; the Python SDK substitutes in
//! `get_parameter`, where `${stepfunc...}` can call the step).

use serde_json::{Map, Value};

/// Where names are looked up.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `${config.x}`: the run's configuration.
    pub config: &'a Map<String, Value>,
    /// `${appvar.x}` / `${_appvar.x}`: the run's variables.
    pub app_vars: &'a Map<String, Value>,
    /// `${key}`: the saved data of the input steps, searched in order.
    pub previous: &'a [Value],
}

/// Substitutes every `${...}` in `value` (strings inside arrays and
/// objects too). A string that is exactly one `${...}` becomes the value it
/// names, whatever its type; otherwise values are joined as text. A name
/// that cannot be resolved is an error naming it.
pub fn substitute(value: &Value, scope: Scope<'_>) -> Result<Value, String> {
    match value {
        Value::String(s) => substitute_str(s, scope),
        Value::Array(items) => items.iter().map(|v| substitute(v, scope)).collect::<Result<_, _>>().map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), substitute(v, scope)?)))
            .collect::<Result<Map<_, _>, String>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

fn substitute_str(s: &str, scope: Scope<'_>) -> Result<Value, String> {
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        if !inner.contains("${") && !inner.contains('}') {
            return lookup(inner, scope);
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else { break };
        out.push_str(&rest[..start]);
        let name = &rest[start + 2..start + len];
        match lookup(name, scope)? {
            Value::String(v) => out.push_str(&v),
            v => out.push_str(&v.to_string()),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

fn lookup(name: &str, scope: Scope<'_>) -> Result<Value, String> {
    let name = name.trim();
    let found = if let Some(key) = name.strip_prefix("config.") {
        scope.config.get(key).cloned()
    } else if let Some(key) = name.strip_prefix("appvar.").or_else(|| name.strip_prefix("_appvar.")) {
        scope.app_vars.get(key).cloned()
    } else if name.starts_with("stepfunc.") || name.starts_with("step_func.") {
        return Err(format!("${{{name}}}: step functions exist only in Python steps"));
    } else {
        scope.previous.iter().find_map(|d| d.get(name).cloned())
    };
    found.ok_or_else(|| format!("${{{name}}} cannot be resolved"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_form_resolves_and_whole_values_keep_their_type() {
        let config = json!({"host": "10.0.0.1", "port": 8080}).as_object().cloned().unwrap();
        let vars = json!({"who": "ops", "ids": [1, 2]}).as_object().cloned().unwrap();
        let previous = vec![json!({"token": "t-1"}), json!({"token": "later", "n": 3})];
        let scope = Scope { config: &config, app_vars: &vars, previous: &previous };
        let cases = [
            (json!("${config.port}"), json!(8080)),
            (json!("http://${config.host}:${config.port}/x"), json!("http://10.0.0.1:8080/x")),
            (json!("${appvar.ids}"), json!([1, 2])),
            (json!("${_appvar.who}"), json!("ops")),
            (json!("${token}"), json!("t-1")),
            (json!({"list": ["${n}", "plain"]}), json!({"list": [3, "plain"]})),
            (json!("no ${ closing"), json!("no ${ closing")),
            (json!(5), json!(5)),
        ];
        for (input, want) in cases {
            assert_eq!(substitute(&input, scope), Ok(want), "{input}");
        }
        assert_eq!(substitute(&json!("${missing}"), scope), Err("${missing} cannot be resolved".into()));
        assert!(substitute(&json!("${stepfunc.f 1}"), scope).unwrap_err().contains("Python"));
    }
}
