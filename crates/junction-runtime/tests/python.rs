//! The Python runtime against real python3: spec 004's BaseStep API,
//! parameters, data between steps, logging, the extension pattern,
//! introspection.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{http_server, texts, Harness};
use junction_core::step::Language;
use junction_runtime::{Execution, IntrospectError, Script, Status};
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/spec004/{name}.py", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn py(name: &str, source: &str, input: Value) -> Execution {
    Execution::new(Script::new(name, Language::Python, source), input)
}

#[tokio::test]
async fn a_query_rest_style_step_reads_substituted_parameters_and_saves_data() {
    let h = Harness::new().await;
    let url = http_server(r#"{"devices": [{"id": 7}]}"#).await;
    let input = json!({
        "step_name": "GETdevices",
        "app_name": "example_integration",
        "parameters": {"prefix_url": "${config.host}", "method": "GET", "relative_url": "/api/${appvar.kind}"},
        "config": {"host": url},
        "app_variables": {"kind": "device"},
        "previous": [],
        "log_level": 20
    });
    let (outcome, events) = h.run(&py("QueryREST", &fixture("QueryREST"), input)).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    assert_eq!(outcome.data, Some(json!({"devices": [{"id": 7}]})));
    let log = texts(&events);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0], ("INFO".to_string(), format!("QueryREST: GET {url}/api/device")));
}

#[tokio::test]
async fn a_missing_required_parameter_stops_the_step_before_execute() {
    let h = Harness::new().await;
    let input = json!({"step_name": "GET", "parameters": {"prefix_url": "http://127.0.0.1:9"}, "log_level": 20});
    let (outcome, _) = h.run(&py("QueryREST", &fixture("QueryREST"), input)).await;
    assert_eq!(outcome.status, Status::Failed);
    assert_eq!(outcome.kind.as_deref(), Some("MissingRequiredStepParameter"));
    assert!(outcome.error.unwrap().contains("method"));
}

#[tokio::test]
async fn the_extension_pattern_runs_the_spec_example_unchanged() {
    let h = Harness::new().await;
    let mut modules = BTreeMap::new();
    modules.insert("base_steps_syncpack.steps.QueryGQL".to_string(), Arc::<str>::from(fixture("QueryGQL_standin")));
    let script = Script::with_modules("OptionalQueryGQL", Language::Python, fixture("OptionalQueryGQL"), modules);

    let enabled =
        Execution::new(script.clone(), json!({"parameters": {"query": "{ devices { id } }"}, "log_level": 20}));
    let (outcome, events) = h.run(&enabled).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    assert_eq!(outcome.data, Some(json!({"query": "{ devices { id } }", "devices": [{"id": 1}, {"id": 2}]})));

    let disabled =
        Execution::new(script.clone(), json!({"parameters": {"query": "q", "enable": "false"}, "log_level": 20}));
    let (outcome, events) = h.run(&disabled).await;
    assert_eq!(outcome.data, Some(json!({})));
    assert_eq!(
        texts(&events),
        vec![("FLOW".to_string(), "OptionalQueryGQL: Step is Disabled. Returning empty dict.".to_string())]
    );

    let found = h.runtime.introspect(&script).await.unwrap();
    assert_eq!(found.friendly_name.as_deref(), Some("Optional QueryGQL Call"));
    assert_eq!(found.version.as_deref(), Some("1.0.0"));
    let names: Vec<_> = found.parameters.iter().map(|p| (p.name.as_str(), p.required, p.kind.as_deref())).collect();
    assert_eq!(names, [("query", true, Some("string")), ("enable", false, Some("bool"))]);
}

const DATA_STEP: &str = r#"
from ipaascore.BaseStep import BaseStep
from ipaascommon.ipaas_exceptions import DataNotAvailableException


class Merge(BaseStep):
    def __init__(self):
        self.friendly_name = "Merge"
        self.new_step_parameter(name="greeting", description="", sample_value="", default_value="hello", required=False)
        self.new_step_parameter(name="sum", description="", sample_value="", default_value=None, required=False)

    def add_numbers(self, a, b):
        return int(a) + int(b)

    def execute(self):
        self.logger.debug("debug is hidden at level 20")
        self.logger.info("app var %s" % self.get_app_variable("region"))
        print("printed line")
        first = self.get_data_from_step_by_name("first")
        second = self.get_data_from_step_by_order(2)
        try:
            self.get_data_from_step_by_order(9)
            missing = False
        except DataNotAvailableException:
            missing = True
        self.save_data_for_next_step({
            "greeting": self.get_parameter("greeting"),
            "sum": self.get_parameter("sum"),
            "joined": self.join_previous_step_data(),
            "first": first,
            "second": second,
            "positions": self.get_available_previous_step_input_positions(),
            "missing_raises": missing,
            "name": self.get_name(),
            "tuple": (1, 2),
            "set": {3},
        })
"#;

#[tokio::test]
async fn data_flows_from_previous_steps_through_the_base_step_api() {
    let h = Harness::new().await;
    let input = json!({
        "step_name": "merge them",
        "parameters": {"sum": "${stepfunc.add_numbers 1 2}"},
        "app_variables": {"region": "eu"},
        "previous": [{"name": "first", "data": [1, 2]}, {"name": "second", "data": [3]}],
        "log_level": 20
    });
    let (outcome, events) = h.run(&py("Merge", DATA_STEP, input)).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    let data = outcome.data.unwrap();
    assert_eq!(data["greeting"], "hello", "default value");
    assert_eq!(data["sum"], 3, "stepfunc substitution returns the object");
    assert_eq!(data["joined"], json!([1, 2, 3]));
    assert_eq!((data["first"].clone(), data["second"].clone()), (json!([1, 2]), json!([3])));
    assert_eq!(data["missing_raises"], true);
    assert_eq!(data["tuple"], json!([1, 2]));
    assert_eq!(data["set"], json!([3]));
    assert_eq!(
        texts(&events),
        vec![
            ("INFO".to_string(), "Merge: app var eu".to_string()),
            ("INFO".to_string(), "Merge: printed line".to_string())
        ]
    );
    // Debug run: level 10 shows debug lines.
    let mut debug = py(
        "Merge",
        DATA_STEP,
        json!({"previous": [{"name": "first", "data": [1]}, {"name": "second", "data": [2]}], "log_level": 10}),
    );
    debug.fresh = true;
    let (_, events) = h.run(&debug).await;
    assert_eq!(texts(&events)[0], ("DEBUG".to_string(), "Merge: debug is hidden at level 20".to_string()));
}

#[tokio::test]
async fn exceptions_fail_with_the_traceback_and_bad_data_is_named() {
    let h = Harness::new().await;
    let raising = "from ipaascore.BaseStep import BaseStep\n\nclass Boom(BaseStep):\n    def execute(self):\n        raise ValueError('bad value')\n";
    let (outcome, _) = h.run(&py("Boom", raising, json!({}))).await;
    assert_eq!(
        (outcome.status, outcome.kind.as_deref(), outcome.error.as_deref()),
        (Status::Failed, Some("ValueError"), Some("bad value"))
    );
    let tb = outcome.traceback.unwrap();
    assert!(tb.contains("Traceback") && tb.contains("Boom.py") && tb.contains("raise ValueError('bad value')"), "{tb}");

    let bad = "import datetime\nfrom ipaascore.BaseStep import BaseStep\n\nclass Dt(BaseStep):\n    def execute(self):\n        self.save_data_for_next_step({'when': datetime.datetime.now()})\n";
    let (outcome, _) = h.run(&py("Dt", bad, json!({}))).await;
    assert_eq!(outcome.status, Status::Failed);
    assert!(outcome.error.unwrap().contains("datetime"), "the type is named");
}

#[tokio::test]
async fn introspection_reports_declarations_and_refuses_incomplete_steps() {
    let h = Harness::new().await;
    let found = h.runtime.introspect(&Script::new("QueryREST", Language::Python, fixture("QueryREST"))).await.unwrap();
    assert_eq!(found.friendly_name.as_deref(), Some("Query REST"));
    assert_eq!(found.version.as_deref(), Some("1.0.0"));
    let params: Vec<_> = found.parameters.iter().map(|p| (p.name.as_str(), p.required)).collect();
    assert_eq!(params, [("prefix_url", true), ("method", true), ("relative_url", false)]);
    assert_eq!(found.parameters[0].sample_value, Some(json!("http://10.2.11.253")));

    for (name, src, expect) in [
        ("Missing", "x = 1\n", "incomplete step: no class named Missing"),
        ("NoExec", "from ipaascore.BaseStep import BaseStep\nclass NoExec(BaseStep):\n    pass\n", "incomplete step"),
        ("Bad", "class Bad(:\n", "syntax error"),
    ] {
        let err = h.runtime.introspect(&Script::new(name, Language::Python, src)).await.unwrap_err();
        let IntrospectError::Rejected(msg) = err else { panic!("{err}") };
        assert!(msg.contains(expect), "{name}: {msg}");
    }
}

#[tokio::test]
async fn javascript_introspection_lists_exports_and_refuses_what_does_not_load() {
    let h = Harness::new().await;
    let found = h
        .runtime
        .introspect(&Script::new(
            "job",
            Language::Javascript,
            "module.exports = { run: async () => 1, preMap: () => {} };",
        ))
        .await
        .unwrap();
    assert_eq!(found.exports, ["run", "preMap"]);
    let err =
        h.runtime.introspect(&Script::new("job", Language::Javascript, "require('child_process')")).await.unwrap_err();
    assert!(err.to_string().contains("module 'child_process' is not supported"), "{err}");
}
