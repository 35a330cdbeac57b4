//! Every Python step example of spec 004 (ScienceLogic Integration Service
//! for Developers), run unchanged by the Python runtime against real
//! python3. Each fixture in `tests/fixtures/spec004/` says which spec lines
//! it holds; fragments are wrapped in the smallest step class, and examples
//! that are not valid Python as printed (string literals broken by a line
//! wrap) use the closest valid form, with a comment saying so.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{lines, texts, Harness};
use junction_core::step::Language;
use junction_runtime::{Execution, IntrospectError, Outcome, Script, Status};
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/spec004/{name}.py", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The step `class_name` with the source of fixture `file`.
fn script(class_name: &str, file: &str) -> Script {
    Script::new(class_name, Language::Python, fixture(file))
}

fn run_of(class_name: &str, file: &str, input: Value) -> Execution {
    Execution::new(script(class_name, file), input)
}

fn s(text: &str) -> String {
    text.to_string()
}

/// `(level, "Module: message")` pairs.
fn log(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(level, text)| (s(level), s(text))).collect()
}

#[track_caller]
fn assert_succeeded(outcome: &Outcome) {
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
}

#[track_caller]
fn assert_failed_with(outcome: &Outcome, kind: &str, message_part: &str) {
    assert_eq!((outcome.status, outcome.kind.as_deref()), (Status::Failed, Some(kind)), "{outcome:?}");
    let error = outcome.error.as_deref().unwrap_or_default();
    assert!(error.contains(message_part), "{error:?} should contain {message_part:?}");
}

/// Lines 342-411, 464-468, 750: the step template, its init settings and
/// parameter, and renaming the class to the file name (line 365).
#[tokio::test]
async fn the_step_template_runs_and_runs_again_under_its_new_name() {
    let h = Harness::new().await;
    let template = script("stepTemplate", "stepTemplate");

    let found = h.runtime.introspect(&template).await.unwrap();
    assert_eq!(
        found.friendly_name.as_deref(),
        Some("friendly name of the step. This name appears in the user interface")
    );
    assert_eq!(found.description.as_deref(), Some("Description of the step"));
    assert_eq!(found.version.as_deref(), Some("version number"));
    assert_eq!(found.parameters.len(), 1);
    let p = &found.parameters[0];
    assert_eq!(
        (p.name.as_str(), p.description.as_deref(), p.sample_value.clone(), p.default_value.clone(), p.required),
        ("parameter_name", Some("description"), Some(json!("sample value")), None, false)
    );

    let (outcome, events) = h.run(&Execution::new(template, json!({"log_level": 20}))).await;
    assert_succeeded(&outcome);
    assert_eq!(outcome.data, Some(json!({"key": "value"})), "lines 467-468");
    assert_eq!(texts(&events), log(&[("INFO", "stepTemplate: informational message")]), "line 750");
    // The finished line: `[ISO-8601 UTC with ms] [INFO] – module: message`.
    let line = &lines(&events)[0];
    assert!(line.starts_with('[') && line.contains("Z] [INFO] \u{2013} stepTemplate: "), "{line}");

    // Line 365: the class takes the new file's name ("newfilename", line 336).
    let renamed = fixture("stepTemplate").replace("class stepTemplate(BaseStep)", "class newfilename(BaseStep)");
    let (outcome, events) =
        h.run(&Execution::new(Script::new("newfilename", Language::Python, renamed), json!({}))).await;
    assert_succeeded(&outcome);
    assert_eq!(outcome.data, Some(json!({"key": "value"})));
    assert_eq!(texts(&events), log(&[("INFO", "newfilename: informational message")]));

    // Not renamed: the file has no class of its name; line 375 calls that incomplete.
    let (outcome, _) = h.run(&run_of("newfilename", "stepTemplate", json!({}))).await;
    assert_failed_with(&outcome, "IncompleteStep", "no class named newfilename");
    let err = h.runtime.introspect(&script("newfilename", "stepTemplate")).await.unwrap_err();
    let IntrospectError::Rejected(msg) = err else { panic!("{err}") };
    assert!(msg.contains("incomplete step"), "{msg}");
}

/// Lines 396-425, 616-621, 637-664, 1128-1141, 2445, 2476-2503, 2616, 2657:
/// QueryREST's init and parameters, and get_parameter in "GETgoogle.com".
#[tokio::test]
async fn query_rest_declares_its_parameters_and_get_parameter_reads_the_application_value() {
    let h = Harness::new().await;
    let found = h.runtime.introspect(&script("QueryREST", "QueryREST_parameters")).await.unwrap();
    assert_eq!(found.friendly_name.as_deref(), Some("Query REST"));
    assert_eq!(
        found.description.as_deref(),
        Some("Step facilitates REST interactions and will return the returned data dictionary and specified headers as data to the next step")
    );
    assert_eq!(found.version.as_deref(), Some("1.0.0"));
    let params: Vec<_> =
        found.parameters.iter().map(|p| (p.name.as_str(), p.required, p.sample_value.clone())).collect();
    assert_eq!(
        params,
        [("prefix_url", true, Some(json!("http://10.2.11.253"))), ("method", true, Some(json!("GET")))],
        "line 1128: both are required"
    );
    assert_eq!(found.parameters[0].description.as_deref(), Some("used with relative_url to create the full URL."));

    // Lines 647-655 (and 1138-1141): the application's step object. Junction passes
    // its parameter keys; name, file and output_to are not parameters.
    let input = json!({
        "step_name": "GETgoogle.com",
        "app_name": "example_integration",
        "parameters": {"method": "GET", "prefix_url": "http://google.com"},
        "previous": [],
        "log_level": 20
    });
    let (outcome, events) = h.run(&run_of("QueryREST", "QueryREST_parameters", input)).await;
    assert_succeeded(&outcome);
    // Line 664: "The value of build_url_1 would be "http://google.com"."
    assert_eq!(outcome.data, Some(json!({"build_url_1": "http://google.com", "name": "GETgoogle.com"})));
    assert_eq!(texts(&events), log(&[("INFO", "QueryREST: GET http://google.com")]));

    // Line 406: without a required parameter the step reports an error and
    // does not execute (nothing logged, nothing saved).
    let input =
        json!({"step_name": "GETgoogle.com", "parameters": {"prefix_url": "http://google.com"}, "log_level": 20});
    let (outcome, events) = h.run(&run_of("QueryREST", "QueryREST_parameters", input)).await;
    assert_failed_with(&outcome, "MissingRequiredStepParameter", "method");
    assert_eq!(outcome.data, None);
    assert!(texts(&events).is_empty(), "{events:?}");
    let (outcome, _) = h.run(&run_of("QueryREST", "QueryREST_parameters", json!({"parameters": {}}))).await;
    assert_failed_with(&outcome, "MissingRequiredStepParameter", "prefix_url, method");
}

/// Lines 529-577 and 2527-2585: join_previous_step_data in QueryREST's
/// query_with_url_generated_from_input, with get_parameter's lookup_data.
#[tokio::test]
async fn query_with_url_generated_from_input_builds_one_url_per_joined_item() {
    let h = Harness::new().await;
    let run = |previous: Value| {
        run_of(
            "QueryREST",
            "QueryREST_from_input",
            json!({
                "step_name": "GET devices",
                "parameters": {"relative_url": "/api/device/${id}", "payload": "${config.body}"},
                "config": {"body": "{}"},
                "previous": previous,
                "log_level": 20
            }),
        )
    };

    // One step's list: one URL per item, ${id} from the item (lookup_data).
    let (outcome, events) = h.run(&run(json!([{"name": "Fetch", "data": [{"id": 1}, {"id": 2}]}]))).await;
    assert_succeeded(&outcome);
    assert_eq!(outcome.data, Some(json!(["/api/device/1", "/api/device/2"])));
    assert_eq!(
        texts(&events),
        log(&[
            ("INFO", "QueryREST: REST /api/device/1 payload={}"),
            ("INFO", "QueryREST: REST /api/device/2 payload={}")
        ])
    );

    // Lists from several steps are joined (line 535); a step that saved nothing is skipped.
    let previous = json!([
        {"name": "EM7", "data": [{"id": 1}]},
        {"name": "Idle", "data": null},
        {"name": "Snow", "data": [{"id": 5}, {"id": 6}]}
    ]);
    let (outcome, _) = h.run(&run(previous)).await;
    assert_eq!(outcome.data, Some(json!(["/api/device/1", "/api/device/5", "/api/device/6"])));

    // Dictionaries are combined into one dictionary (line 2539): one URL.
    let previous = json!([{"name": "EM7", "data": {"id": 3, "ip": "10.0.0.3"}}, {"name": "Snow", "data": {"id": 4}}]);
    let (outcome, _) = h.run(&run(previous)).await;
    assert_eq!(outcome.data, Some(json!(["/api/device/4"])));

    // Any other type: the example's NotImplementedError.
    let (outcome, _) = h.run(&run(json!([{"name": "EM7", "data": "text"}]))).await;
    assert_failed_with(
        &outcome,
        "NotImplementedError",
        "Data type: <class 'str'> is not currently supported for generating relative urls form data",
    );
    assert!(outcome.traceback.unwrap().contains("query_with_url_generated_from_input"));

    // Lines 539 and 2539: data of different types cannot be joined.
    let (outcome, _) =
        h.run(&run(json!([{"name": "EM7", "data": [{"id": 1}]}, {"name": "Snow", "data": {"id": 2}}]))).await;
    assert_failed_with(&outcome, "TypeError", "cannot join data of different types");
}

/// Lines 483-502 and 2364-2395: get_data_from_step_by_name.
#[tokio::test]
async fn get_data_from_step_by_name_returns_each_named_steps_data() {
    let h = Harness::new().await;
    let em7 = json!([{"id": 1, "name": "router-1"}]);
    let snow = json!({"cmdb_ci": [{"sys_id": "abc", "name": "router-1"}]});
    let input = json!({
        "step_name": "Compare devices",
        "previous": [{"name": "FetchDevicesFromEM7", "data": em7}, {"name": "FetchDevicesFromSnow", "data": snow}],
        "log_level": 20
    });
    let (outcome, _) = h.run(&run_of("CompareDevices", "CompareDevices", input)).await;
    assert_succeeded(&outcome);
    assert_eq!(outcome.data, Some(json!({"em7": em7, "snow": snow})));

    // A step whose data does not reach this one.
    let input = json!({"previous": [{"name": "FetchDevicesFromEM7", "data": em7}]});
    let (outcome, _) = h.run(&run_of("CompareDevices", "CompareDevices", input)).await;
    assert_failed_with(&outcome, "DataNotAvailableException", "FetchDevicesFromSnow");
}

/// Lines 504-527, 2348-2362 and 2397-2434: get_data_from_step_by_order and
/// get_available_previous_step_input_positions in stepD.
///
/// The spec contradicts itself: its example counts stepA as position 0 and
/// so expects stepC's data from position 2, but line 2352 reserves position
/// 0 for the current step's arguments. Junction (and the runtime protocol)
/// follow line 2352: previous steps are 1..n, so `get_data_from_step_by_order(2)`
/// is stepB's data here and stepC is position 3.
#[tokio::test]
async fn get_data_from_step_by_order_counts_previous_steps_from_one() {
    let h = Harness::new().await;
    let input = json!({
        "step_name": "stepD",
        "parameters": {"limit": 10},
        "previous": [
            {"name": "stepA", "data": ["from A"]},
            {"name": "stepB", "data": ["from B"]},
            {"name": "stepC", "data": ["from C"]}
        ],
        "log_level": 20
    });
    let (outcome, _) = h.run(&run_of("stepD", "stepD", input)).await;
    assert_succeeded(&outcome);
    let data = outcome.data.unwrap();
    assert_eq!(data["data_from_stepC"], json!(["from B"]), "position 2 is the second previous step");
    assert_eq!(data["position_3"], json!(["from C"]));
    assert_eq!(data["own_arguments"], json!({"limit": 10}), "line 2352: position 0");
    // Line 2362: (name, position) tuples, which travel as two-element lists.
    assert_eq!(data["positions"], json!([["stepA", 1], ["stepB", 2], ["stepC", 3]]));

    // Line 2421: a position with no step raises DataNotAvailableException.
    let input = json!({"parameters": {"raise": "missing_data"}, "previous": [{"name": "stepA", "data": 1}]});
    let (outcome, _) = h.run(&run_of("RaiseExceptions", "RaiseExceptions", input)).await;
    assert_failed_with(&outcome, "DataNotAvailableException", "no previous step at position 5");
}

/// Lines 529-551 and 2543-2557: join_previous_step_data with a list of steps.
#[tokio::test]
async fn join_previous_step_data_joins_the_named_steps_or_all_of_them() {
    let h = Harness::new().await;
    let run = |previous: Value| run_of("JoinSteps", "JoinSteps", json!({"previous": previous, "log_level": 20}));
    let lists = json!([
        {"name": "stepA", "data": [{"id": 1}, {"id": 2}]},
        {"name": "stepB", "data": [{"id": 3}]},
        {"name": "stepC", "data": [{"id": 4}]},
        {"name": "stepD", "data": [{"id": 5}]}
    ]);
    let (outcome, _) = h.run(&run(lists)).await;
    assert_succeeded(&outcome);
    assert_eq!(
        outcome.data,
        Some(json!({
            "joined": [{"id": 1}, {"id": 2}, {"id": 5}],
            "all": [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}]
        }))
    );

    let dicts = json!([
        {"name": "stepA", "data": {"a": 1, "shared": "A"}},
        {"name": "stepB", "data": {"b": 2}},
        {"name": "stepC", "data": null},
        {"name": "stepD", "data": {"d": 4, "shared": "D"}}
    ]);
    let (outcome, _) = h.run(&run(dicts)).await;
    assert_eq!(
        outcome.data,
        Some(json!({
            "joined": {"a": 1, "shared": "D", "d": 4},
            "all": {"a": 1, "shared": "D", "b": 2, "d": 4}
        }))
    );

    // Line 2539: different types raise an exception.
    let mixed = json!([{"name": "stepA", "data": [1]}, {"name": "stepD", "data": {"d": 4}}]);
    let (outcome, _) = h.run(&run(mixed)).await;
    assert_failed_with(&outcome, "TypeError", "stepA (list), stepD (dict)");
}

/// Lines 691-726 and 2301-2346: get_app_variable in "sync_SL1_data".
///
/// Chapter 2 defines "s11_hostname" but reads "sl1_hostname" (a letter l
/// for a one); only a variable of the name read is found.
#[tokio::test]
async fn get_app_variable_returns_the_application_variables_value() {
    let h = Harness::new().await;
    let input =
        json!({"step_name": "sync_SL1_data", "app_variables": {"s11_hostname": "10.64.68.25"}, "log_level": 20});
    let (outcome, _) = h.run(&run_of("sync_SL1_data", "sync_SL1_data", input)).await;
    assert_succeeded(&outcome);
    assert_eq!(
        outcome.data,
        Some(json!({"chapter_2": null, "chapter_5": "10.64.68.25", "get_app_variables": "10.64.68.25"})),
        "line 2346; chapter 2's differently spelt name is unknown and reads as None"
    );

    let input = json!({"app_variables": {"s11_hostname": "10.64.68.25", "sl1_hostname": "10.64.68.25"}});
    let (outcome, _) = h.run(&run_of("sync_SL1_data", "sync_SL1_data", input)).await;
    assert_eq!(
        outcome.data,
        Some(json!({"chapter_2": "10.64.68.25", "chapter_5": "10.64.68.25", "get_app_variables": "10.64.68.25"})),
        "line 726"
    );
}

/// Lines 666-689: variables in parameters, including the add_numbers example.
#[tokio::test]
async fn parameters_substitute_config_appvar_previous_step_and_step_function_variables() {
    let h = Harness::new().await;
    let input = json!({
        "step_name": "substitute",
        "parameters": {
            "param": "${step_func.add_numbers 1 2}",
            "host": "${config.em7_host}",
            "example": "${appvar.exampleVariable}",
            "previous": "${object_from_previous_step}",
            "computed": "${stepfunc.add_numbers ${appvar.count} 2}",
            "text": "https://${config.em7_host}/api/device?limit=${stepfunc.add_numbers 1 2}"
        },
        // The configuration of lines 1611-1631 and the application variable of lines 1275-1281.
        "config": {"em7_host": "10.2.11.42", "em7_user": "em7admin"},
        "app_variables": {"exampleVariable": "exampleValue", "count": "40"},
        "previous": [{"name": "First EM7 Query", "data": {"object_from_previous_step": {"id": 7}}}],
        "log_level": 20
    });
    let (outcome, events) = h.run(&run_of("add_numbers_step", "add_numbers_step", input)).await;
    assert_succeeded(&outcome);
    let data = outcome.data.unwrap();
    // Line 687: "The value of "param" will be "3"." A value that is exactly one
    // variable is the function's result itself (here the number 3).
    assert_eq!(data["param"], json!(3));
    assert_eq!(data["host"], json!("10.2.11.42"), "line 679");
    assert_eq!(data["example"], json!("exampleValue"), "line 680");
    assert_eq!(data["previous"], json!({"id": 7}), "line 678");
    assert_eq!(data["computed"], json!(42), "line 681: substituted arguments");
    assert_eq!(data["text"], json!("https://10.2.11.42/api/device?limit=3"));
    assert!(texts(&events).is_empty(), "{events:?}");

    // A variable that cannot be resolved fails the step instead of passing the text on.
    let input = json!({"parameters": {"param": "${config.missing}"}});
    let (outcome, _) = h.run(&run_of("add_numbers_step", "add_numbers_step", input)).await;
    assert_failed_with(&outcome, "VariableSubstitutionException", "config.missing");
}

/// Lines 728-751: the step's logger at each level the spec lists.
#[tokio::test]
async fn the_step_logger_writes_each_level_the_spec_lists() {
    let h = Harness::new().await;
    let (outcome, events) = h.run(&run_of("StepLogging", "StepLogging", json!({"log_level": 20}))).await;
    assert_succeeded(&outcome);
    assert_eq!(outcome.data, None, "it saved None");
    assert_eq!(
        texts(&events),
        log(&[
            ("CRITICAL", "StepLogging: log_message"),
            ("ERROR", "StepLogging: log_message"),
            ("INFO", "StepLogging: log_message"),
            ("WARNING", "StepLogging: log_message"),
            ("INFO", "StepLogging: informational message"),
        ])
    );
    for (line, level) in lines(&events).iter().zip(["CRITICAL", "ERROR", "INFO", "WARNING", "INFO"]) {
        assert!(line.contains(&format!("Z] [{level}] \u{2013} StepLogging: ")), "{line}");
    }

    // At warning level the info lines are dropped.
    let mut quiet = run_of("StepLogging", "StepLogging", json!({"log_level": 30}));
    quiet.fresh = true;
    let (_, events) = h.run(&quiet).await;
    assert_eq!(
        texts(&events),
        log(&[
            ("CRITICAL", "StepLogging: log_message"),
            ("ERROR", "StepLogging: log_message"),
            ("WARNING", "StepLogging: log_message"),
        ])
    );
}

/// Lines 753-759 (and the import of line 355): any exception fails the step,
/// which is discarded, with the exception and its stack trace.
#[tokio::test]
async fn an_exception_from_execute_fails_the_step_with_its_traceback() {
    let h = Harness::new().await;
    let run = |what: &str| {
        run_of("RaiseExceptions", "RaiseExceptions", json!({"parameters": {"raise": what}, "log_level": 20}))
    };
    for (what, kind, message, raise_line) in [
        ("user", "DeviceSyncError", "device 7 has no IP address", "raise DeviceSyncError("),
        ("standard", "ValueError", "bad value", "raise ValueError("),
        ("ipaas", "StepFailedException", "nothing to sync", "raise ipaas_exceptions.StepFailedException("),
    ] {
        let (outcome, events) = h.run(&run(what)).await;
        assert_failed_with(&outcome, kind, message);
        assert_eq!(outcome.data, None, "{what}: the data saved before the exception is discarded");
        let traceback = outcome.traceback.unwrap();
        assert!(
            traceback.starts_with("Traceback")
                && traceback.contains("RaiseExceptions.py")
                && traceback.contains(raise_line),
            "{what}: {traceback}"
        );
        // Lines written before the exception are kept.
        assert_eq!(texts(&events), log(&[("INFO", &format!("RaiseExceptions: raising {what}"))]));
    }

    // Caught, DataNotAvailableException (line 2421) lets the step go on.
    let (outcome, _) = h.run(&run("caught")).await;
    assert_succeeded(&outcome);
    assert_eq!(outcome.data, Some(json!({"caught": "DataNotAvailableException"})));
    let (outcome, _) = h.run(&run("none")).await;
    assert_eq!(outcome.data, Some(json!({"saved": "before the exception"})));
}

/// Lines 583-593: name, file and output_to are every step's parameters and
/// cannot be redefined.
///
/// output_to comes back empty: the worker does not pass a step's output_to
/// to its runtime (protocol v1 has no field for it), so a step cannot read
/// its own output_to.
#[tokio::test]
async fn base_parameters_name_and_file_come_from_the_application() {
    let h = Harness::new().await;
    let input = json!({"step_name": "GETgoogle.com", "parameters": {"method": "GET"}, "log_level": 20});
    let (outcome, _) = h.run(&run_of("BaseParameters", "BaseParameters", input)).await;
    assert_succeeded(&outcome);
    assert_eq!(
        outcome.data,
        Some(json!({
            "name": "GETgoogle.com",
            "file": "BaseParameters",
            "output_to": [],
            "cannot_be_overwritten": ["name", "file", "output_to"]
        }))
    );
}

/// Lines 450-468 and 2619-2646: save_data_for_next_step and the types its
/// note lists. Junction carries saved data as JSON, not pickle: tuples and
/// sets arrive as lists, number keys as strings, and complex numbers cannot
/// be carried at all.
#[tokio::test]
async fn saved_data_of_the_listed_types_reaches_the_next_step() {
    let h = Harness::new().await;
    let (outcome, _) = h.run(&run_of("SaveTypes", "SaveTypes", json!({"log_level": 20}))).await;
    assert_succeeded(&outcome);
    assert_eq!(
        outcome.data,
        Some(json!({
            "none": null,
            "true": true,
            "false": false,
            "integer": 42,
            "long_integer": 9223372036854775807i64,
            "float": 2.5,
            "string": "plain",
            "unicode": "Grüße – ✓",
            "tuple": [1, "two"],
            "list": [1, [2, 3]],
            "set": [1, 2, 3],
            "dict": {"nested": {"k": "v"}, "7": "number key"}
        }))
    );

    // Integers beyond 64 bits would lose digits in the worker's JSON; the step
    // fails and says where, rather than passing on a different number.
    let (outcome, _) =
        h.run(&run_of("SaveTypes", "SaveTypes", json!({"parameters": {"extra": "longer_integer"}}))).await;
    assert_failed_with(&outcome, "TypeError", "data['longer_integer']");

    let (outcome, _) = h.run(&run_of("SaveTypes", "SaveTypes", json!({"parameters": {"extra": "complex"}}))).await;
    assert_failed_with(&outcome, "TypeError", "data['complex'] is of type complex");
}

fn query_gql_modules() -> BTreeMap<String, Arc<str>> {
    let mut modules = BTreeMap::new();
    modules.insert("base_steps_syncpack.steps.QueryGQL".to_string(), Arc::<str>::from(fixture("QueryGQL_standin")));
    modules
}

/// Lines 2214-2275: extending a SyncPack step. The full example (2241-2275)
/// is the fixture `OptionalQueryGQL.py`, also run by `tests/python.rs`; the
/// spec prints its execute body as a second block starting at column 0,
/// which is not valid Python, so the fixture indents it into execute.
#[tokio::test]
async fn extended_steps_run_the_parents_execute_and_read_its_saved_data() {
    let h = Harness::new().await;
    let optional =
        Script::with_modules("OptionalQueryGQL", Language::Python, fixture("OptionalQueryGQL"), query_gql_modules());
    for (enable, runs) in [
        (json!(null), true),
        (json!(true), true),
        (json!("True"), true),
        (json!(false), false),
        (json!("false"), false),
    ] {
        let input = json!({"parameters": {"query": "{ devices { id } }", "enable": enable}, "log_level": 20});
        let (outcome, events) = h.run(&Execution::new(optional.clone(), input)).await;
        assert_succeeded(&outcome);
        if runs {
            assert_eq!(outcome.data.unwrap()["devices"], json!([{"id": 1}, {"id": 2}]), "enable {enable}");
            assert_eq!(texts(&events), log(&[("INFO", "OptionalQueryGQL: running query { devices { id } }")]));
        } else {
            assert_eq!(outcome.data, Some(json!({})), "enable {enable}");
            assert_eq!(texts(&events), log(&[("FLOW", "OptionalQueryGQL: Step is Disabled. Returning empty dict.")]));
        }
    }
    let found = h.runtime.introspect(&optional).await.unwrap();
    let enable = &found.parameters[1];
    assert_eq!(
        (enable.name.as_str(), enable.required, enable.default_value.clone(), enable.kind.as_deref()),
        ("enable", false, Some(json!(true)), Some("bool"))
    );

    // Line 2237: after the parent's execute, get_current_saved_data.
    let annotated =
        Script::with_modules("AnnotatedQueryGQL", Language::Python, fixture("AnnotatedQueryGQL"), query_gql_modules());
    let (outcome, _) =
        h.run(&Execution::new(annotated.clone(), json!({"parameters": {"query": "{ devices { id } }"}}))).await;
    assert_succeeded(&outcome);
    assert_eq!(
        outcome.data,
        Some(json!({
            "query": "{ devices { id } }",
            "devices": [{"id": 1}, {"id": 2}],
            "device_count": 2,
            "saved_before_parent": null
        }))
    );
    // Line 2225: the parent's parameters are included.
    let found = h.runtime.introspect(&annotated).await.unwrap();
    assert_eq!(found.friendly_name.as_deref(), Some("Annotated QueryGQL Call"));
    assert_eq!(found.parameters.iter().map(|p| (p.name.as_str(), p.required)).collect::<Vec<_>>(), [("query", true)]);
    let (outcome, _) = h.run(&Execution::new(annotated, json!({}))).await;
    assert_failed_with(&outcome, "MissingRequiredStepParameter", "query");
}

/// Lines 2505-2525: get_parameter_from_previous_step. It needs the previous
/// step's parameters, which only an optional `previous[].parameters` carries
/// (protocol v1 does not define it and the worker does not send it); without
/// them the call raises DataNotAvailableException.
#[tokio::test]
async fn get_parameter_from_previous_step_reads_what_the_application_gave_that_step() {
    let h = Harness::new().await;
    let previous = json!([{
        "name": "GETgoogle.com",
        "data": {"status": 200},
        "parameters": {"method": "GET", "prefix_url": "http://google.com"}
    }]);
    let (outcome, _) = h.run(&run_of("PreviousParameter", "PreviousParameter", json!({"previous": previous}))).await;
    assert_succeeded(&outcome);
    assert_eq!(
        outcome.data,
        Some(json!({"positional": "GET", "parameter_name": "http://google.com", "param_name": "http://google.com"}))
    );

    let previous = json!([{"name": "GETgoogle.com", "data": {"status": 200}}]);
    let (outcome, _) = h.run(&run_of("PreviousParameter", "PreviousParameter", json!({"previous": previous}))).await;
    assert_failed_with(&outcome, "DataNotAvailableException", "were not passed");
}

/// Every function's "Syntax" and "Parameters" argument names, as keywords
/// (chapter 2 and chapter 5 name some arguments differently).
#[tokio::test]
async fn base_step_functions_accept_the_argument_names_of_both_chapters() {
    let h = Harness::new().await;
    let input = json!({
        "step_name": "keywords",
        "app_variables": {"region": "eu"},
        "previous": [{"name": "stepA", "data": [1, 2]}, {"name": "stepB", "data": {"b": 2}}],
        "log_level": 20
    });
    let (outcome, _) = h.run(&run_of("SyntaxKeywords", "SyntaxKeywords", input)).await;
    assert_succeeded(&outcome);
    assert_eq!(
        outcome.data,
        Some(json!({
            "name": "keywords",
            "positions": [["stepA", 1], ["stepB", 2]],
            "by_name": [1, 2],
            "by_order_position": [1, 2],
            "by_order_pos": [1, 2],
            "join_data_from": {"b": 2},
            "join_step_name": {"b": 2},
            "parameter": "hello world",
            "app_variable_name": "eu",
            "app_variable_variable_name": "eu"
        }))
    );
}
