//! Record flows (spec 001), the pure half: integrator.io's import mapping
//! (`{"fields": [...], "lists": [...]}`) checked and applied to a record,
//! and the answers of the per-record hooks (`preMap`, `postMap`,
//! `postSubmit`, `postResponseMap`) read into one action per record.
//!
//! Mapping choices where integrator.io's documentation is silent: a path is
//! dot-separated keys with `[n]` for an array index (`customer.emails[0]`);
//! a field whose `extract` finds nothing is left out (or gets its `default`);
//! `dataType` converts `string`, `number` and `boolean` values; a list entry
//! maps each element of the source array `extract` (default: the same path
//! as `generate`) with its own fields, whose paths are relative to that
//! element.

use serde_json::{Map, Value};

use crate::validation::{Invalid, Violations};

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Parses `a.b[2].c`; `None` for an empty path or an empty segment.
pub fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && (out.is_empty() || rest.is_empty()) {
            return None;
        }
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let index: usize = rest.get(1..close)?.parse().ok()?;
            out.push(Segment::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The value at `path` in `record`, if there is one.
pub fn get<'a>(record: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(record, |v, s| match s {
        Segment::Key(k) => v.get(k.as_str()),
        Segment::Index(i) => v.get(*i),
    })
}

/// Sets `value` at `path` in `target`, making the objects and arrays on the
/// way (an array is padded with `null`); a non-container in the way is
/// replaced.
pub fn set(target: &mut Value, path: &[Segment], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *target = value;
        return;
    };
    let mut node = target;
    for (i, segment) in parents.iter().enumerate() {
        let next_is_index = matches!(path.get(i + 1), Some(Segment::Index(_)));
        let empty = || if next_is_index { Value::Array(Vec::new()) } else { Value::Object(Map::new()) };
        node = match segment {
            Segment::Key(k) => {
                if !node.is_object() {
                    *node = Value::Object(Map::new());
                }
                let map = node.as_object_mut().expect("made an object");
                let child = map.entry(k.clone()).or_insert_with(empty);
                if !(child.is_object() || child.is_array()) {
                    *child = empty();
                }
                child
            }
            Segment::Index(i) => {
                if !node.is_array() {
                    *node = Value::Array(Vec::new());
                }
                let list = node.as_array_mut().expect("made an array");
                if list.len() <= *i {
                    list.resize(*i + 1, Value::Null);
                }
                if !(list[*i].is_object() || list[*i].is_array()) {
                    list[*i] = empty();
                }
                &mut list[*i]
            }
        };
    }
    match last {
        Segment::Key(k) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            node.as_object_mut().expect("made an object").insert(k.clone(), value);
        }
        Segment::Index(i) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            let list = node.as_array_mut().expect("made an array");
            if list.len() <= *i {
                list.resize(*i + 1, Value::Null);
            }
            list[*i] = value;
        }
    }
}

/// `dataType` of a mapped field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    String,
    Number,
    Boolean,
}

/// Where a mapped field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Extract(Vec<Segment>),
    HardCoded(Value),
    /// `{{record.a.b}}` text; never evaluates code.
    Template(crate::flow::template::Template),
}

/// A static lookup map: the extracted value's text picks the value.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticLookup {
    pub map: Map<String, Value>,
    /// When the map has no entry; none leaves the field out.
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    pub source: Source,
    pub generate: Vec<Segment>,
    pub default: Option<Value>,
    pub data_type: Option<DataType>,
    pub lookup: Option<StaticLookup>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListMapping {
    pub generate: Vec<Segment>,
    pub extract: Vec<Segment>,
    pub fields: Vec<FieldMapping>,
}

/// An import's mapping. An empty mapping passes records through unchanged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping {
    pub fields: Vec<FieldMapping>,
    pub lists: Vec<ListMapping>,
}

impl Mapping {
    /// Checks `{"fields": [...], "lists": [...]}`; every problem is named by
    /// its JSON path under `base` (e.g. `pageProcessors[0].mapping`).
    pub fn parse(base: &str, value: &Value) -> Result<Mapping, Invalid> {
        let mut v = Violations::default();
        let Some(object) = value.as_object() else {
            return Err(Invalid::one(base, "type", "must be an object with fields and lists"));
        };
        for key in object.keys().filter(|k| !matches!(k.as_str(), "fields" | "lists")) {
            v.push(format!("{base}.{key}"), "unknown_field", "a mapping has fields and lists");
        }
        let fields = parse_fields(&format!("{base}.fields"), object.get("fields"), &mut v);
        let mut lists = Vec::new();
        match object.get("lists") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{base}.lists[{i}]");
                    let Some(list) = item.as_object() else {
                        v.push(&at, "type", "must be an object with generate and fields");
                        continue;
                    };
                    for key in list.keys().filter(|k| !matches!(k.as_str(), "generate" | "extract" | "fields")) {
                        v.push(format!("{at}.{key}"), "unknown_field", "a list has generate, extract and fields");
                    }
                    let generate = path_field(&format!("{at}.generate"), list.get("generate"), true, &mut v);
                    let extract = match list.get("extract") {
                        None => generate.clone(),
                        some => path_field(&format!("{at}.extract"), some, true, &mut v),
                    };
                    let fields = parse_fields(&format!("{at}.fields"), list.get("fields"), &mut v);
                    if let (Some(generate), Some(extract)) = (generate, extract) {
                        lists.push(ListMapping { generate, extract, fields });
                    }
                }
            }
            Some(_) => v.push(format!("{base}.lists"), "type", "must be a list"),
        }
        v.finish(Mapping { fields, lists })
    }

    /// The record as the import's target sees it. Without any field or
    /// list the record passes unchanged.
    pub fn apply(&self, record: &Value) -> Value {
        if self.fields.is_empty() && self.lists.is_empty() {
            return record.clone();
        }
        let mut out = Value::Object(Map::new());
        apply_fields(&self.fields, record, &mut out);
        for list in &self.lists {
            let items: Vec<Value> = match get(record, &list.extract) {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        let mut mapped = Value::Object(Map::new());
                        apply_fields(&list.fields, item, &mut mapped);
                        mapped
                    })
                    .collect(),
                _ => continue,
            };
            set(&mut out, &list.generate, Value::Array(items));
        }
        out
    }
}

fn apply_fields(fields: &[FieldMapping], record: &Value, out: &mut Value) {
    for field in fields {
        let mut value = match &field.source {
            Source::HardCoded(v) => Some(v.clone()),
            Source::Extract(path) => {
                get(record, path).filter(|v| !v.is_null()).cloned().or_else(|| field.default.clone())
            }
            Source::Template(t) => Some(Value::String(t.render(&serde_json::json!({ "record": record })))),
        };
        if let (Some(lookup), Some(found)) = (&field.lookup, &value) {
            let key = match found {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            value = lookup.map.get(&key).cloned().or_else(|| lookup.default.clone());
        }
        if let Some(value) = value {
            set(out, &field.generate, convert(value, field.data_type));
        }
    }
}

/// A simple typed conversion; a value that does not convert is kept as is.
fn convert(value: Value, to: Option<DataType>) -> Value {
    match (to, &value) {
        (Some(DataType::String), Value::Number(n)) => Value::String(n.to_string()),
        (Some(DataType::String), Value::Bool(b)) => Value::String(b.to_string()),
        (Some(DataType::Number), Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            Ok(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(value),
            Err(_) => value,
        },
        (Some(DataType::Number), Value::Bool(b)) => Value::from(u8::from(*b)),
        (Some(DataType::Boolean), Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" | "" => Value::Bool(false),
            _ => value,
        },
        (Some(DataType::Boolean), Value::Number(n)) => Value::Bool(n.as_f64().is_some_and(|f| f != 0.0)),
        _ => value,
    }
}

fn path_field(at: &str, value: Option<&Value>, required: bool, v: &mut Violations) -> Option<Vec<Segment>> {
    match value {
        None | Some(Value::Null) if !required => None,
        None | Some(Value::Null) => {
            v.push(at, "required", "a path is required");
            None
        }
        Some(Value::String(s)) => {
            let parsed = parse_path(s);
            if parsed.is_none() {
                v.push(at, "path", "must be a path like a.b or items[0].sku");
            }
            parsed
        }
        Some(_) => {
            v.push(at, "type", "must be a path (text)");
            None
        }
    }
}

fn parse_fields(at: &str, value: Option<&Value>, v: &mut Violations) -> Vec<FieldMapping> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            v.push(at, "type", "must be a list");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let Some(field) = item.as_object() else {
            v.push(&here, "type", "must be an object with generate and extract or hardCodedValue");
            continue;
        };
        for key in field.keys().filter(|k| {
            !matches!(
                k.as_str(),
                "extract" | "hardCodedValue" | "template" | "generate" | "default" | "dataType" | "lookup"
            )
        }) {
            v.push(
                format!("{here}.{key}"),
                "unknown_field",
                "a field has extract, hardCodedValue or template, generate, default, dataType and lookup",
            );
        }
        let generate = path_field(&format!("{here}.generate"), field.get("generate"), true, v);
        let given = ["extract", "hardCodedValue", "template"].iter().filter(|k| field.contains_key(**k)).count();
        let source = match (field.get("extract"), field.get("hardCodedValue"), field.get("template")) {
            _ if given > 1 => {
                v.push(&here, "one_of", "give one of extract, hardCodedValue and template");
                None
            }
            (None, Some(value), None) => Some(Source::HardCoded(value.clone())),
            (None, None, Some(Value::String(text))) => match crate::flow::template::Template::parse(text) {
                Ok(t) => {
                    let stray = t.variables().find(|p| !matches!(p.first(), Some(Segment::Key(k)) if k == "record"));
                    match stray {
                        Some(_) => {
                            v.push(
                                format!("{here}.template"),
                                "unknown_variable",
                                "a mapping template reads {{record...}} only",
                            );
                            None
                        }
                        None => Some(Source::Template(t)),
                    }
                }
                Err(e) => {
                    v.push(format!("{here}.template"), "template", e);
                    None
                }
            },
            (None, None, Some(_)) => {
                v.push(format!("{here}.template"), "type", "must be text such as {{record.first}} {{record.last}}");
                None
            }
            (extract, _, _) => path_field(&format!("{here}.extract"), extract, true, v).map(Source::Extract),
        };
        let lookup = match field.get("lookup") {
            None | Some(Value::Null) => None,
            Some(Value::Object(l)) => {
                for key in l.keys().filter(|k| !matches!(k.as_str(), "map" | "default")) {
                    v.push(format!("{here}.lookup.{key}"), "unknown_field", "a lookup has map and default");
                }
                match l.get("map") {
                    Some(Value::Object(map)) => {
                        Some(StaticLookup { map: map.clone(), default: l.get("default").cloned() })
                    }
                    _ => {
                        v.push(
                            format!("{here}.lookup.map"),
                            "required",
                            "an object from source values to target values",
                        );
                        None
                    }
                }
            }
            Some(_) => {
                v.push(format!("{here}.lookup"), "type", "must be {\"map\": {...}, \"default\": ...}");
                None
            }
        };
        let data_type = match field.get("dataType") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if t == "string" => Some(DataType::String),
            Some(Value::String(t)) if t == "number" => Some(DataType::Number),
            Some(Value::String(t)) if t == "boolean" => Some(DataType::Boolean),
            Some(_) => {
                v.push(format!("{here}.dataType"), "one_of", "must be string, number or boolean");
                None
            }
        };
        if let (Some(source), Some(generate)) = (source, generate) {
            out.push(FieldMapping { source, generate, default: field.get("default").cloned(), data_type, lookup });
        }
    }
    out
}

// --- per-record hook answers ---------------------------------------------------

/// What a per-record hook said of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordAction {
    /// Go on with `data`; `errors` (if any) are logged for the record.
    Process { data: Value, errors: Vec<Value> },
    /// `{}`: the record is ignored.
    Ignore,
    /// Only `errors`: the record fails with them.
    Fail { errors: Vec<Value> },
}

/// Reads a per-record hook's answer (`preMap`, `postMap`, `postSubmit`,
/// `postResponseMap`): an array as long as the page, one element per
/// record. Anything else fails the whole page with a sentence naming the
/// hook.
pub fn record_actions(hook: &str, page_len: usize, answer: &Value) -> Result<Vec<RecordAction>, String> {
    let Some(items) = answer.as_array() else {
        return Err(format!("{hook} must answer an array (one element per record); it answered {}", kind_of(answer)));
    };
    if items.len() != page_len {
        return Err(format!(
            "{hook} answered {} elements for a page of {page_len} records; the lengths must match",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Some(object) = item.as_object() else {
                return Err(format!(
                    "{hook}: element {i} must be an object ({{data, errors}} or {{}}); it is {}",
                    kind_of(item)
                ));
            };
            let errors = match object.get("errors") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list.clone(),
                Some(other) => vec![other.clone()],
            };
            Ok(match object.get("data") {
                Some(data) => RecordAction::Process { data: data.clone(), errors },
                None if errors.is_empty() => RecordAction::Ignore,
                None => RecordAction::Fail { errors },
            })
        })
        .collect()
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_parse_and_bad_ones_are_refused() {
        use Segment::*;
        assert_eq!(parse_path("a.b"), Some(vec![Key("a".into()), Key("b".into())]));
        assert_eq!(parse_path("items[2].sku"), Some(vec![Key("items".into()), Index(2), Key("sku".into())]));
        assert_eq!(parse_path("m[0][1]"), Some(vec![Key("m".into()), Index(0), Index(1)]));
        for bad in ["", ".", "a..b", "a[", "a[x]", "a[1]b", "[0]"] {
            assert_eq!(parse_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn templates_and_static_lookups() {
        let mapping = Mapping::parse(
            "mapping",
            &json!({"fields": [
                {"template": "{{record.first}} {{record.last}}", "generate": "name"},
                {"extract": "country", "lookup": {"map": {"DE": "Germany", "FR": "France"}, "default": "Elsewhere"},
                 "generate": "country"},
                {"extract": "code", "lookup": {"map": {"1": "one"}}, "generate": "code"}]}),
        )
        .unwrap();
        let out = mapping.apply(&json!({"first": "Ada", "last": "L", "country": "DE", "code": 1}));
        assert_eq!(out, json!({"name": "Ada L", "country": "Germany", "code": "one"}));
        let out = mapping.apply(&json!({"first": "B", "country": "US", "code": 2}));
        assert_eq!(out, json!({"name": "B ", "country": "Elsewhere"}));
        let err = Mapping::parse(
            "m",
            &json!({"fields": [{"template": "{{settings.x}}", "generate": "a"}, {"template": "{{#if x}}", "generate": "b"},
                               {"extract": "a", "template": "x", "generate": "c"}, {"extract": "a", "lookup": 1, "generate": "d"}]}),
        )
        .unwrap_err();
        let rules: Vec<(&str, &str)> = err.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        assert_eq!(
            rules,
            [
                ("m.fields[0].template", "unknown_variable"),
                ("m.fields[1].template", "template"),
                ("m.fields[2]", "one_of"),
                ("m.fields[3].lookup", "type")
            ]
        );
    }

    #[test]
    fn the_issue_s_mapping_maps_a_record() {
        let mapping = Mapping::parse(
            "mapping",
            &json!({"fields": [{"extract": "id", "generate": "orderId"},
                               {"extract": "customer.email", "generate": "email"}]}),
        )
        .unwrap();
        let record = json!({"id": 7, "customer": {"email": "a@b.c", "name": "A"}, "status": "open"});
        assert_eq!(mapping.apply(&record), json!({"orderId": 7, "email": "a@b.c"}));
        // Nothing to extract: the field is left out.
        assert_eq!(mapping.apply(&json!({"id": 8})), json!({"orderId": 8}));
    }

    #[test]
    fn hard_coded_values_defaults_types_nesting_and_lists() {
        let mapping = Mapping::parse(
            "m",
            &json!({
                "fields": [
                    {"hardCodedValue": "web", "generate": "channel"},
                    {"extract": "qty", "generate": "line.quantity", "dataType": "number"},
                    {"extract": "missing", "generate": "note", "default": "none"},
                    {"extract": "paid", "generate": "flags[1]", "dataType": "boolean"}
                ],
                "lists": [{"generate": "lines", "extract": "items", "fields": [{"extract": "sku", "generate": "code"}]}]
            }),
        )
        .unwrap();
        let record = json!({"qty": "3", "paid": "yes", "items": [{"sku": "A"}, {"sku": "B", "x": 1}]});
        assert_eq!(
            mapping.apply(&record),
            json!({"channel": "web", "line": {"quantity": 3}, "note": "none", "flags": [null, true],
                   "lines": [{"code": "A"}, {"code": "B"}]})
        );
        assert_eq!(Mapping::default().apply(&record), record, "no mapping passes records through");
    }

    #[test]
    fn bad_mappings_name_every_field() {
        let bad = json!({
            "fields": [{"generate": "a"}, {"extract": "x..y", "generate": "b"}, {"extract": "a", "hardCodedValue": 1, "generate": "c"},
                       {"extract": "a"}, {"extract": "a", "generate": "d", "dataType": "date"}, 5, {"extract": "a", "generate": "e", "lookupName": "l"}],
            "lists": [{"fields": []}],
            "other": 1
        });
        let Invalid(found) = Mapping::parse("pageProcessors[0].mapping", &bad).unwrap_err();
        let pairs: Vec<(String, String)> = found.iter().map(|v| (v.field.clone(), v.rule.clone())).collect();
        let want = [
            ("pageProcessors[0].mapping.other", "unknown_field"),
            ("pageProcessors[0].mapping.fields[0].extract", "required"),
            ("pageProcessors[0].mapping.fields[1].extract", "path"),
            ("pageProcessors[0].mapping.fields[2]", "one_of"),
            ("pageProcessors[0].mapping.fields[3].generate", "required"),
            ("pageProcessors[0].mapping.fields[4].dataType", "one_of"),
            ("pageProcessors[0].mapping.fields[5]", "type"),
            ("pageProcessors[0].mapping.fields[6].lookupName", "unknown_field"),
            ("pageProcessors[0].mapping.lists[0].generate", "required"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect();
        assert_eq!(pairs, want);
        assert!(Mapping::parse("m", &json!([])).is_err());
    }

    #[test]
    fn per_record_hook_answers_are_read_one_action_per_record() {
        let answer = json!([{"data": {"a": 1}}, {}, {"errors": [{"code": "bad", "message": "no", "source": "hook"}]},
                            {"data": {"b": 2}, "errors": [{"code": "warn"}]}]);
        assert_eq!(
            record_actions("preMap", 4, &answer).unwrap(),
            vec![
                RecordAction::Process { data: json!({"a": 1}), errors: vec![] },
                RecordAction::Ignore,
                RecordAction::Fail { errors: vec![json!({"code": "bad", "message": "no", "source": "hook"})] },
                RecordAction::Process { data: json!({"b": 2}), errors: vec![json!({"code": "warn"})] },
            ]
        );
        let e = record_actions("postMap", 3, &json!([{}, {}])).unwrap_err();
        assert_eq!(e, "postMap answered 2 elements for a page of 3 records; the lengths must match");
        assert!(record_actions("postSubmit", 1, &json!({"data": []})).unwrap_err().contains("must answer an array"));
        assert!(record_actions("preMap", 1, &json!([5])).unwrap_err().contains("element 0 must be an object"));
    }
}
