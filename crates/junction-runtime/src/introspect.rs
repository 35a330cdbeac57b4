//! Checks an uploaded step with the real interpreter, so what is accepted
//! is what will load later.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use junction_core::step::{Language, StepParameter};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Where the interpreters are.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub node: PathBuf,
    pub python: PathBuf,
    /// Upper bound for one check; a parser that takes longer is treated as
    /// unavailable rather than holding a request.
    pub check_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            node: "node".into(),
            python: "python3".into(),
            check_timeout: Duration::from_secs(20),
        }
    }
}

/// What a check learned about a source.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Introspection {
    /// Parameters the step declares. Empty until the runtimes issue reads
    /// `new_step_parameter` calls.
    pub parameters: Vec<StepParameter>,
}

#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    /// The source is not acceptable; the message says why, for the user.
    #[error("{0}")]
    Rejected(String),
    /// The interpreter could not be run; not the user's fault.
    #[error("{0}")]
    Unavailable(String),
}

/// Python side of the check: parse without executing, list the top-level
/// classes. Reads the source on stdin; prints one JSON line.
const PY_CHECK: &str = r#"
import ast, json, sys
src = sys.stdin.buffer.read().decode("utf-8")
try:
    tree = ast.parse(src, filename=sys.argv[1])
except SyntaxError as e:
    print(json.dumps({"error": "%s (line %s, column %s)" % (e.msg, e.lineno, e.offset)}))
    sys.exit(0)
except (RecursionError, MemoryError, ValueError, OverflowError) as e:
    # Pathological sources (very deep nesting) exhaust the parser.
    print(json.dumps({"error": "the parser gave up: %s" % type(e).__name__}))
    sys.exit(0)
print(json.dumps({"classes": [n.name for n in tree.body if isinstance(n, ast.ClassDef)]}))
"#;

/// Checks `source` as a step named `name` in `language`.
pub async fn check_source(
    config: &RuntimeConfig,
    language: Language,
    name: &str,
    source: &str,
) -> Result<Introspection, IntrospectError> {
    match language {
        Language::Javascript => check_javascript(config, name, source).await,
        Language::Python => check_python(config, name, source).await,
    }
}

async fn check_javascript(
    config: &RuntimeConfig,
    name: &str,
    source: &str,
) -> Result<Introspection, IntrospectError> {
    let dir =
        tempfile::tempdir().map_err(|e| IntrospectError::Unavailable(format!("temp dir: {e}")))?;
    let file = dir.path().join(format!("{name}.js"));
    tokio::fs::write(&file, source)
        .await
        .map_err(|e| IntrospectError::Unavailable(format!("writing {}: {e}", file.display())))?;
    let mut cmd = Command::new(&config.node);
    cmd.arg("--check").arg(&file);
    let out = run(cmd, None, config).await?;
    if out.status.success() {
        return Ok(Introspection::default());
    }
    // Node prints the temp path; the user knows the file by the step name.
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "");
    let message = stderr
        .lines()
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with("Node.js v")
                && !l.trim_start().starts_with("at ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    Err(IntrospectError::Rejected(format!(
        "the source does not parse as JavaScript: {}",
        message.trim()
    )))
}

async fn check_python(
    config: &RuntimeConfig,
    name: &str,
    source: &str,
) -> Result<Introspection, IntrospectError> {
    let mut cmd = Command::new(&config.python);
    cmd.args(["-I", "-c", PY_CHECK, &format!("{name}.py")]);
    let out = run(cmd, Some(source), config).await?;
    if !out.status.success() {
        return Err(IntrospectError::Unavailable(format!(
            "python check failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        error: Option<String>,
        #[serde(default)]
        classes: Vec<String>,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout)
        .map_err(|e| IntrospectError::Unavailable(format!("python check answered {e}")))?;
    if let Some(err) = answer.error {
        return Err(IntrospectError::Rejected(format!(
            "the source does not parse as Python: {err}"
        )));
    }
    if !answer.classes.iter().any(|c| c == name) {
        let found = if answer.classes.is_empty() {
            "none".to_string()
        } else {
            answer.classes.join(", ")
        };
        return Err(IntrospectError::Rejected(format!(
            "a Python step must define a class named like the step ({name}); classes found: {found}"
        )));
    }
    Ok(Introspection::default())
}

async fn run(
    mut cmd: Command,
    stdin: Option<&str>,
    config: &RuntimeConfig,
) -> Result<std::process::Output, IntrospectError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .kill_on_drop(true);
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| IntrospectError::Unavailable(format!("cannot start {program}: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.as_bytes().to_vec();
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
    }
    match tokio::time::timeout(config.check_timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(IntrospectError::Unavailable(format!("{program}: {e}"))),
        Err(_) => Err(IntrospectError::Unavailable(format!(
            "{program} did not finish within {:?}",
            config.check_timeout
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RuntimeConfig {
        RuntimeConfig::default()
    }

    #[tokio::test]
    async fn javascript_that_parses_is_accepted_and_syntax_errors_are_explained() {
        let ok = "module.exports = { run: async (args) => 'done' };";
        assert!(check_source(&cfg(), Language::Javascript, "job", ok)
            .await
            .is_ok());
        let err = check_source(
            &cfg(),
            Language::Javascript,
            "job",
            "module.exports = { run: ( };",
        )
        .await
        .unwrap_err();
        let IntrospectError::Rejected(msg) = err else {
            panic!("{err}")
        };
        assert!(msg.contains("SyntaxError"), "{msg}");
        assert!(!msg.contains("/tmp"), "temp paths are not shown: {msg}");
    }

    #[tokio::test]
    async fn python_needs_a_class_named_like_the_step() {
        let src = "from ipaascore.BaseStep import BaseStep\n\nclass QueryREST(BaseStep):\n    def execute(self):\n        pass\n";
        assert!(check_source(&cfg(), Language::Python, "QueryREST", src)
            .await
            .is_ok());
        let err = check_source(&cfg(), Language::Python, "Other", src)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("classes found: QueryREST"),
            "{err}"
        );
        let err = check_source(&cfg(), Language::Python, "X", "class X(:\n")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("does not parse as Python"),
            "{err}"
        );
        let deep = format!("a{}", ".a".repeat(200_000));
        let err = check_source(&cfg(), Language::Python, "X", &deep)
            .await
            .unwrap_err();
        assert!(
            matches!(err, IntrospectError::Rejected(_)),
            "exhausting the parser is the source's fault: {err}"
        );
    }

    #[tokio::test]
    async fn a_missing_interpreter_is_unavailable_not_rejected() {
        let cfg = RuntimeConfig {
            node: "/nonexistent/node".into(),
            ..cfg()
        };
        let err = check_source(&cfg, Language::Javascript, "j", "1")
            .await
            .unwrap_err();
        assert!(matches!(err, IntrospectError::Unavailable(_)), "{err}");
    }
}
