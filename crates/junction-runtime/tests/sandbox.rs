//! Inside bubblewrap a script cannot see the data dir: not the database,
//! not the key file. Without the sandbox a Python script could (the control
//! case), so this test can fail; a Node script is also held by Node's
//! permission model.

mod common;

use common::{data_dir, DataDir, Harness};
use junction_core::step::Language;
use junction_runtime::{Execution, Sandbox, Script, Status};
use serde_json::json;

const JS_READER: &str = r#"const fs = require('fs'); module.exports = { run: async (args) => {
    const seen = {};
    for (const p of args.arguments.paths) {
        try { seen[p] = fs.readFileSync(p, 'utf8'); } catch (e) { seen[p] = e.code; }
    }
    return JSON.stringify(seen);
} };"#;

const PY_READER: &str = r#"
from ipaascore.BaseStep import BaseStep


class Reader(BaseStep):
    def execute(self):
        seen = {}
        for p in self.get_app_variable("paths"):
            try:
                with open(p) as f:
                    seen[p] = f.read()
            except OSError as e:
                seen[p] = type(e).__name__
        self.save_data_for_next_step(seen)
"#;

async fn reads(sandbox: Sandbox, d: &DataDir) -> (serde_json::Value, serde_json::Value) {
    let data = d.data.clone();
    let h = Harness::with(|c| {
        c.dir = data.join("runtime");
        c.sandbox = sandbox;
        c.hidden_paths = vec![data.clone()];
    })
    .await;
    let paths = json!([d.data.join("junction.db"), d.data.join("secret.key")]);
    let js = Execution::new(
        Script::new("reader", Language::Javascript, JS_READER),
        json!({"args": {"arguments": {"paths": paths}}}),
    );
    let (outcome, events) = h.run(&js).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    let from_js: serde_json::Value = serde_json::from_str(&outcome.message).unwrap();
    let py = Execution::new(
        Script::new("Reader", Language::Python, PY_READER),
        json!({"app_variables": {"paths": paths}, "log_level": 20}),
    );
    let (outcome, events) = h.run(&py).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    (from_js, outcome.data.unwrap())
}

#[tokio::test]
async fn scripts_cannot_read_the_database_or_the_key_file_inside_the_sandbox() {
    let probe = Harness::with(|c| c.sandbox = Sandbox::Auto).await;
    assert!(
        probe.runtime.sandboxed(),
        "bubblewrap (bwrap) is not installed; the sandbox tests need it: apt-get install bubblewrap"
    );
    let d = data_dir();
    let (js, py) = reads(Sandbox::Off, &d).await;
    let db = d.data.join("junction.db").to_string_lossy().into_owned();
    let key = d.data.join("secret.key").to_string_lossy().into_owned();
    // Node's permission model refuses files outside the runtime's own
    // directories even without bubblewrap; Python shows what bubblewrap adds.
    assert_eq!((js[&db].as_str(), js[&key].as_str()), (Some("ERR_ACCESS_DENIED"), Some("ERR_ACCESS_DENIED")));
    assert_eq!(
        (py[&db].as_str(), py[&key].as_str()),
        (Some("DATABASE-BYTES"), Some("KEY-BYTES")),
        "control: readable without the sandbox"
    );

    let (js, py) = reads(Sandbox::Auto, &d).await;
    assert_eq!((js[&db].as_str(), js[&key].as_str()), (Some("ERR_ACCESS_DENIED"), Some("ERR_ACCESS_DENIED")), "{js}");
    assert_eq!((py[&db].as_str(), py[&key].as_str()), (Some("FileNotFoundError"), Some("FileNotFoundError")), "{py}");
}
