//! Packages (extension stacks): a directory of modules with its own
//! `node_modules`, loaded with Node's own `require`, called with
//! integrator-extension's `callFunction` semantics.

mod common;

use std::path::Path;

use common::{texts, Harness};
use junction_runtime::{Execution, Package, Script, Status};
use serde_json::{json, Value};

/// A package like a real connector: code split over `src/`, a dependency in
/// its own `node_modules`, an environment entry.
fn write_package(dir: &Path) {
    let files = [
        ("package.json", r#"{"name": "conn", "version": "1.0.0", "main": "index.js"}"#),
        (
            "index.js",
            r#"
const { shout } = require('./src/helper');
let calls = 0;
class Settings {
  constructor() { this.functionName = 'fromInstance'; }
  whoami(options, callback) { callback(null, this.functionName); }
}
module.exports = {
  hooks: {
    preSavePage(options, callback) {
      calls += 1;
      console.log('page of', options.data.length);
      callback(null, { data: options.data.map(shout), errors: [], calls });
    },
    async asyncHook(options) { return { key: process.env.API_KEY, dates: [options.lastExportDateTime instanceof Date, options.lastExportDateTime.toISOString()] }; },
    failing(options, callback) { const e = new Error('boom'); e.code = 'my_code'; callback(e); },
    named(options, callback) { const e = new Error('named'); e.name = 'my_error'; callback(e); },
    throwing(options, callback) { throw new TypeError('bad thing'); },
    notPlain(options, callback) { callback(null, { when: new Date() }); },
    cyclic(options, callback) { const a = {}; a.a = a; callback(null, a); },
    nothing(options, callback) { callback(); },
    leaky(options, callback) { console.log('secret is', process.env.API_KEY); callback(null, 1); },
  },
  settings: new Settings(),
  topLevel(options, callback) { callback(null, 'top'); },
};
"#,
        ),
        ("src/helper.js", "const pad = require('leftpad');\nexports.shout = (r) => ({ ...r, name: pad(String(r.name).toUpperCase(), 6) });\n"),
        ("node_modules/leftpad/package.json", r#"{"name": "leftpad", "version": "0.0.1", "main": "index.js"}"#),
        ("node_modules/leftpad/index.js", "module.exports = (s, n) => s.padStart(n, '*');\n"),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn script(dir: &Path) -> Script {
    let package = Package { dir: dir.to_path_buf(), env: vec![("API_KEY".into(), "k-12345-secret".into())] };
    Script::package("stack:conn", "v1", r#"{"diy":"index.js"}"#, package)
}

fn call(script: &Script, object: Option<&str>, function: &str, options: Value) -> Execution {
    let mut e = Execution::new(
        script.clone(),
        json!({"module": "index.js", "object": object, "function": function, "options": options, "maxResponseSize": 5242880}),
    );
    e.entry = "extension".into();
    e.tenant = "stack:conn@1".into();
    e.secrets = vec!["k-12345-secret".into()];
    e
}

#[tokio::test]
async fn a_package_serves_extension_calls_with_the_library_semantics() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    write_package(dir.path());
    // Like a stack's directory in the 0700 data dir: under root the
    // scripts' uids read a linked copy.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let s = script(dir.path());

    let info = h.runtime.introspect(&s).await.expect("the package loads");
    let functions = info.functions.expect("functions are reported");
    assert_eq!(functions["index.js"]["hooks"][0], "asyncHook");
    assert_eq!(functions["index.js"]["settings"], json!(["whoami"]));
    assert_eq!(functions["index.js"][""], json!(["topLevel"]));

    let data = json!({"data": [{"name": "ab"}, {"name": "c"}]});
    let (out, events) = h.run(&call(&s, Some("hooks"), "preSavePage", data.clone())).await;
    assert_eq!(out.status, Status::Succeeded, "{out:?}");
    let answer = out.data.clone().unwrap();
    assert_eq!(answer["outcome"], "ok");
    let json: Value = serde_json::from_str(answer["json"].as_str().unwrap()).unwrap();
    assert_eq!(json, json!({"data": [{"name": "****AB"}, {"name": "*****C"}], "errors": [], "calls": 1}));
    assert_eq!(answer["size"], answer["json"].as_str().unwrap().len());
    assert!(texts(&events).contains(&("LOG".into(), "page of 2".into())));
    // Warm: the module state persists for the same tenant.
    let (out, _) = h.run(&call(&s, Some("hooks"), "preSavePage", data)).await;
    assert!(out.warm);
    assert!(out.data.unwrap()["json"].as_str().unwrap().contains("\"calls\":2"));

    // async style, the Date conversion, process.env
    let (out, _) =
        h.run(&call(&s, Some("hooks"), "asyncHook", json!({"lastExportDateTime": "2024-05-01T10:00:00.000Z"}))).await;
    let json: Value = serde_json::from_str(out.data.unwrap()["json"].as_str().unwrap()).unwrap();
    assert_eq!(json, json!({"key": "k-12345-secret", "dates": [true, "2024-05-01T10:00:00.000Z"]}));

    // `this` is the object
    let (out, _) = h.run(&call(&s, Some("settings"), "whoami", json!({"a": 1}))).await;
    assert_eq!(out.data.unwrap()["json"], "\"fromInstance\"");
    let (out, _) = h.run(&call(&s, None, "topLevel", json!({"a": 1}))).await;
    assert_eq!(out.data.unwrap()["json"], "\"top\"");

    let cases = [
        (Some("wrappers"), "x", json!({"outcome": "object_not_found"})),
        (Some("hooks"), "missing", json!({"outcome": "invalid_function"})),
        (Some("hooks"), "failing", json!({"outcome": "error", "error": {"message": "boom", "code": "my_code"}})),
        (Some("hooks"), "named", json!({"outcome": "error", "error": {"message": "named", "code": "my_error"}})),
        (
            Some("hooks"),
            "throwing",
            json!({"outcome": "error", "error": {"message": "bad thing", "code": "TypeError"}}),
        ),
        (Some("hooks"), "notPlain", json!({"outcome": "invalid_extension_response"})),
        (Some("hooks"), "cyclic", json!({"outcome": "invalid_extension_response"})),
        (Some("hooks"), "nothing", json!({"outcome": "ok", "json": null, "size": 0})),
    ];
    for (object, function, expected) in cases {
        let (out, _) = h.run(&call(&s, object, function, json!({"a": 1}))).await;
        assert_eq!(out.status, Status::Succeeded, "{function}: {out:?}");
        assert_eq!(out.data.unwrap(), expected, "{function}");
    }

    // The environment's secret is masked in the log.
    let (_, events) = h.run(&call(&s, Some("hooks"), "leaky", json!({"a": 1}))).await;
    assert!(texts(&events).contains(&("LOG".into(), "secret is ********".into())), "{events:?}");
}

#[tokio::test]
async fn a_package_that_does_not_load_is_refused_with_its_error() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), "require('not-installed-anywhere');\n").unwrap();
    let s =
        Script::package("stack:bad", "v1", r#"{"diy":"index.js"}"#, Package { dir: dir.path().into(), env: vec![] });
    let err = h.runtime.introspect(&s).await.unwrap_err().to_string();
    assert!(err.contains("not-installed-anywhere"), "{err}");
}

#[tokio::test]
async fn a_package_cannot_start_processes() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.js"),
        "exports.hooks = { spawn(o, cb) { try { require('child_process').execSync('id'); cb(null, 'ran'); } catch (e) { cb(null, e.code || e.message); } } };\n",
    )
    .unwrap();
    let s =
        Script::package("stack:spawn", "v1", r#"{"diy":"index.js"}"#, Package { dir: dir.path().into(), env: vec![] });
    let (out, _) = h.run(&call(&s, Some("hooks"), "spawn", json!({"a": 1}))).await;
    assert_eq!(out.data.unwrap()["json"], "\"ERR_ACCESS_DENIED\"");
}
