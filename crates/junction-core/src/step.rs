//! Steps: uploaded units of code. A step name is also what applications put
//! in a step's `file`, and for Python it is the class the runtime
//! instantiates (spec 004: "the step name will also be the name of the
//! Python class").

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::name::check_name;
use crate::validation::{Invalid, Violations};

/// Longest accepted step description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// Largest accepted step source, in bytes.
pub const MAX_SOURCE_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Javascript,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Javascript => "javascript",
        }
    }

    pub fn parse(s: &str) -> Option<Language> {
        match s {
            "python" => Some(Language::Python),
            "javascript" => Some(Language::Javascript),
            _ => None,
        }
    }

    /// Guesses the language of an upload that did not say. Only a source
    /// that shows the marks of exactly one language gets an answer; the
    /// runtime's parser then has the last word.
    pub fn infer(source: &str) -> Option<Language> {
        let mut js = false;
        let mut py = false;
        for line in source.lines().map(str::trim_start) {
            if line.starts_with("//") || line.starts_with("/*") {
                js = true;
            }
            js |= line.contains("module.exports")
                || line.starts_with("exports.")
                || line.contains("require(")
                || line.contains("=>")
                || line.starts_with("function ")
                || line.starts_with("async function ")
                || line.starts_with("const ")
                || line.starts_with("let ")
                || line.starts_with("var ");
            py |= (line.starts_with("class ") && line.trim_end().ends_with(':'))
                || (line.starts_with("def ") && line.trim_end().ends_with(':'))
                || line.starts_with("import ")
                || (line.starts_with("from ") && line.contains(" import "));
        }
        match (js, py) {
            (true, false) => Some(Language::Javascript),
            (false, true) => Some(Language::Python),
            _ => None,
        }
    }

    /// The file extension the runtime gives the source.
    pub fn extension(self) -> &'static str {
        match self {
            Language::Python => "py",
            Language::Javascript => "js",
        }
    }
}

/// A parameter a step declares (Python `new_step_parameter`); filled in by
/// the runtime's introspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepParameter {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<serde_json::Value>,
    #[serde(default)]
    pub required: bool,
    /// The parameter's type as the step declares it (`string`, `bool`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An upload as the API receives it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpload {
    /// Step name; for Python also the class name.
    pub name: String,
    /// `python` or `javascript`; inferred from the source when absent.
    #[serde(default)]
    pub language: Option<Language>,
    /// The source code.
    pub data: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The name of the file the source came from (the web UI's Upload New
    /// File). Only checked, never stored: its extension must be `.js` or
    /// `.py` and agree with `language`, and it settles the language when
    /// `language` is absent.
    #[serde(default)]
    pub file_name: Option<String>,
}

impl StepUpload {
    /// Checks what can be checked without a runtime and settles the
    /// language.
    pub fn validate(&self) -> Result<Language, Invalid> {
        let mut v = Violations::default();
        if let Err(e) = check_name("name", &self.name) {
            v.add(e);
        }
        if self.data.trim().is_empty() {
            v.push("data", "required", "the step source must not be empty");
        } else if self.data.len() > MAX_SOURCE_BYTES {
            v.push("data", "max_size", format!("the step source must be at most {MAX_SOURCE_BYTES} bytes"));
        }
        if self.name.ends_with(".js") || self.name.ends_with(".py") {
            v.push("name", "name_syntax", "a step name has no file extension (applications name it without .js/.py)");
        }
        if let Some(d) = &self.description {
            if d.len() > MAX_DESCRIPTION_BYTES || d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                v.push(
                    "description",
                    "text",
                    format!("must be at most {MAX_DESCRIPTION_BYTES} bytes of text without control characters"),
                );
            }
        }
        if self.data.contains('\0') {
            v.push("data", "text", "the step source must not contain NUL characters");
        }
        let from_file = self.file_name.as_deref().and_then(|f| check_file_name(f, self.language, &mut v));
        let language = self.language.or(from_file).or_else(|| Language::infer(&self.data));
        if language.is_none() && !self.data.trim().is_empty() {
            v.push(
                "language",
                "inferable",
                "could not tell whether the source is Python or JavaScript; give \"language\": \"python\" or \"javascript\"",
            );
        }
        if language == Some(Language::Python) && !is_python_identifier(&self.name) {
            v.push(
                "name",
                "python_class_name",
                "a Python step's name is its class name, so it must be a Python identifier (letters, digits, '_', not starting with a digit)",
            );
        }
        v.finish(language.unwrap_or(Language::Javascript))
    }
}

/// The language a file name's extension says, if it is `.js` or `.py` and
/// agrees with the declared language; otherwise a violation of `file_name`.
fn check_file_name(file: &str, declared: Option<Language>, v: &mut Violations) -> Option<Language> {
    if file.is_empty() || file.len() > 255 || file.contains(['/', '\\']) || file.chars().any(char::is_control) {
        v.push(
            "file_name",
            "file_name",
            "must be a file name of at most 255 bytes, without a directory or control characters",
        );
        return None;
    }
    let by_extension = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => Language::Javascript,
        Some("py") => Language::Python,
        _ => {
            let wanted = declared.map_or(".js or .py", |l| if l == Language::Python { ".py" } else { ".js" });
            v.push("file_name", "extension", format!("only {wanted} files can be uploaded, not {file:?}"));
            return None;
        }
    };
    if declared.is_some_and(|l| l != by_extension) {
        let wanted = if by_extension == Language::Python { ".js" } else { ".py" };
        v.push("file_name", "extension", format!("only {wanted} files can be uploaded, not {file:?}"));
        return None;
    }
    Some(by_extension)
}

pub fn is_python_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One stored version of a step. Versions are immutable; a new upload of
/// the same name is the next version.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StepVersion {
    pub name: String,
    pub version: i64,
    pub language: Language,
    /// Hex SHA-256 of the source bytes.
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parameters: Vec<StepParameter>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// The name the step gives itself (Python `self.friendly_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// The step's own version string (Python `self.version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_version: Option<String>,
    /// The source code.
    pub data: String,
}

/// A step in a listing: its latest version, without the source.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StepSummary {
    pub name: String,
    pub version: i64,
    pub language: Language,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_language_only_from_unambiguous_sources() {
        let cases = [
            ("module.exports = { run };", Some(Language::Javascript)),
            ("const run = async (args) => 'ok';\nmodule.exports = { run };", Some(Language::Javascript)),
            ("from ipaascore.BaseStep import BaseStep\nclass A(BaseStep):\n    pass\n", Some(Language::Python)),
            ("import os\n", Some(Language::Python)),
            ("hello world", None),
            ("import os\nmodule.exports = 1", None),
        ];
        for (src, want) in cases {
            assert_eq!(Language::infer(src), want, "{src}");
        }
    }

    fn upload(name: &str, language: Option<Language>, data: &str) -> StepUpload {
        StepUpload { name: name.into(), language, data: data.into(), description: None, file_name: None }
    }

    #[test]
    fn file_names_must_be_js_or_py_and_agree_with_the_language() {
        let with = |language, file: &str| StepUpload { file_name: Some(file.into()), ..upload("s", language, "1") };
        assert_eq!(with(None, "deploy.js").validate(), Ok(Language::Javascript));
        assert_eq!(with(Some(Language::Javascript), "deploy.js").validate(), Ok(Language::Javascript));
        assert_eq!(with(None, "Sync.py").validate(), Ok(Language::Python));
        for (language, file, message) in [
            (Some(Language::Javascript), "deploy.txt", "only .js files"),
            (Some(Language::Javascript), "deploy.py", "only .js files"),
            (Some(Language::Javascript), "deploy.JS", "only .js files"),
            (Some(Language::Javascript), "deploy", "only .js files"),
            (None, "deploy.sh", "only .js or .py files"),
            (Some(Language::Python), "s.js", "only .py files"),
        ] {
            let err = with(language, file).validate().unwrap_err();
            assert_eq!((err.0[0].field.as_str(), err.0[0].rule.as_str()), ("file_name", "extension"), "{file}");
            assert!(err.0[0].message.contains(message), "{file}: {}", err.0[0].message);
        }
        assert_eq!(with(None, "../x.js").validate().unwrap_err().0[0].rule, "file_name");
    }

    #[test]
    fn validation_reports_every_problem() {
        let err = upload("../x", None, "   ").validate().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        assert_eq!(fields, [("name", "name_syntax"), ("data", "required")]);
    }

    #[test]
    fn python_steps_need_identifier_names() {
        let err = upload("my-step", Some(Language::Python), "class X: pass").validate().unwrap_err();
        assert_eq!(err.0[0].rule, "python_class_name");
        assert_eq!(upload("my-step", Some(Language::Javascript), "x").validate(), Ok(Language::Javascript));
        assert_eq!(upload("MyStep", None, "import os").validate(), Ok(Language::Python));
    }

    #[test]
    fn names_with_extensions_and_binary_descriptions_are_refused() {
        assert_eq!(upload("x.js", Some(Language::Javascript), "1").validate().unwrap_err().0[0].rule, "name_syntax");
        let mut u = upload("x", Some(Language::Javascript), "1");
        u.description = Some("a\0b".into());
        assert_eq!(u.validate().unwrap_err().0[0].field, "description");
    }

    #[test]
    fn unknown_language_is_refused_by_name() {
        let err = upload("a", None, "???").validate().unwrap_err();
        assert_eq!(err.0[0].field, "language");
    }
}
