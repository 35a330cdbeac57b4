//! Handlebars-style templates of the built-in adapters (`{{record.id}}`,
//! `{{connection.encrypted.token}}`): text with variables that are dotted
//! paths (with `[n]` indexes) into a JSON context. Nothing is ever
//! evaluated: helpers (`{{#if}}`, `{{> partial}}`, `{{{raw}}}`) are refused
//! when the template is parsed.
//!
//! Rendering: a string is inserted as it is, a number or boolean as its
//! JSON text, `null` or a missing value as nothing, an object or array as
//! compact JSON. [`Template::render_url`] percent-encodes each inserted
//! value as a URL component and leaves the literal text alone.
//! [`JsonTemplate`] applies templates to every string leaf of a JSON body;
//! a leaf that is exactly one variable becomes that value itself.

use serde_json::{Map, Value};

use crate::flow::mapping::{get, parse_path, Segment};
use crate::validation::{Invalid, Violations};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Variable(Vec<Segment>),
}

/// One piece of a template, in order: literal text or a variable's path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Piece<'a> {
    Literal(&'a str),
    Variable(&'a [Segment]),
}

/// A parsed template: literal text and variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`. An error names the problem and the byte offset of the
    /// `{{` it is about.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            literal.push_str(&rest[..open]);
            let at = offset + open;
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!("unclosed `{{{{` at offset {at}"));
            };
            let inner = &after[..close];
            let path = inner.trim();
            if let Some(c) = path.chars().next().filter(|c| "#/^>!&{~=".contains(*c)) {
                return Err(format!("`{{{{{c}` at offset {at}: helpers are not supported, only `{{{{path}}}}`"));
            }
            if path.is_empty() {
                return Err(format!("empty `{{{{}}}}` at offset {at}: a path is required"));
            }
            if path.contains(char::is_whitespace) {
                return Err(format!("`{{{{{path}}}}}` at offset {at}: helpers are not supported, only `{{{{path}}}}`"));
            }
            let Some(segments) = parse_path(path) else {
                return Err(format!("bad path `{path}` at offset {at}: must be like a.b or items[0].sku"));
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Variable(segments));
            let consumed = open + 2 + close + 2;
            rest = &rest[consumed..];
            offset += consumed;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The text with every variable replaced by its value in `ctx`.
    pub fn render(&self, ctx: &Value) -> String {
        self.render_with(ctx, |s, out| out.push_str(s))
    }

    /// Like [`render`](Self::render), but each inserted value is
    /// percent-encoded as a URL component (the literal text is kept).
    pub fn render_url(&self, ctx: &Value) -> String {
        self.render_with(ctx, percent_encode_into)
    }

    fn render_with(&self, ctx: &Value, mut insert: impl FnMut(&str, &mut String)) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(path) => insert(&value_text(get(ctx, path)), &mut out),
            }
        }
        out
    }

    /// The paths of the variables, in order (for the caller's checks).
    pub fn variables(&self) -> impl Iterator<Item = &[Segment]> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(path) => Some(path.as_slice()),
            Part::Literal(_) => None,
        })
    }

    /// The pieces in order (a SQL statement turns each variable into a
    /// bind parameter).
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        self.parts.iter().map(|p| match p {
            Part::Literal(text) => Piece::Literal(text),
            Part::Variable(path) => Piece::Variable(path),
        })
    }

    /// True when there is no variable.
    pub fn is_plain(&self) -> bool {
        self.variables().next().is_none()
    }

    /// The single variable when the template is exactly `{{path}}`.
    fn only_variable(&self) -> Option<&[Segment]> {
        match self.parts.as_slice() {
            [Part::Variable(path)] => Some(path),
            _ => None,
        }
    }
}

/// A value as template text: strings raw, `null`/missing empty, anything
/// else compact JSON.
pub fn value_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Percent-encodes `text` as a URL component: everything but the
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    percent_encode_into(text, &mut out);
    out
}

fn percent_encode_into(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Fixed(Value),
    Text(Template),
    Whole(Vec<Segment>),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// A JSON body template: every string leaf is a [`Template`]; a leaf that
/// is exactly one `{{path}}` becomes the value itself (an object, a
/// number, ...; `null` when missing). Object keys are kept as written.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonTemplate(Node);

impl JsonTemplate {
    /// Parses every string leaf of `value`; a bad template is a violation
    /// (rule `template`) at its JSON path under `base`.
    pub fn parse(base: &str, value: &Value) -> Result<JsonTemplate, Invalid> {
        let mut v = Violations::default();
        let node = parse_node(base, value, &mut v);
        v.finish(JsonTemplate(node))
    }

    /// The body for `ctx`.
    pub fn render(&self, ctx: &Value) -> Value {
        render_node(&self.0, ctx)
    }

    /// The paths of every variable in the body.
    pub fn variables(&self) -> Vec<&[Segment]> {
        let mut out = Vec::new();
        collect_variables(&self.0, &mut out);
        out
    }
}

fn parse_node(at: &str, value: &Value, v: &mut Violations) -> Node {
    match value {
        Value::String(text) => match Template::parse(text) {
            Ok(t) if t.is_plain() => Node::Fixed(value.clone()),
            Ok(t) => match t.only_variable() {
                Some(path) => Node::Whole(path.to_vec()),
                None => Node::Text(t),
            },
            Err(e) => {
                v.push(at, "template", e);
                Node::Fixed(Value::Null)
            }
        },
        Value::Array(items) => {
            Node::Array(items.iter().enumerate().map(|(i, item)| parse_node(&format!("{at}[{i}]"), item, v)).collect())
        }
        Value::Object(map) => {
            Node::Object(map.iter().map(|(k, item)| (k.clone(), parse_node(&format!("{at}.{k}"), item, v))).collect())
        }
        other => Node::Fixed(other.clone()),
    }
}

fn render_node(node: &Node, ctx: &Value) -> Value {
    match node {
        Node::Fixed(value) => value.clone(),
        Node::Text(t) => Value::String(t.render(ctx)),
        Node::Whole(path) => get(ctx, path).cloned().unwrap_or(Value::Null),
        Node::Array(items) => Value::Array(items.iter().map(|n| render_node(n, ctx)).collect()),
        Node::Object(entries) => {
            Value::Object(entries.iter().map(|(k, n)| (k.clone(), render_node(n, ctx))).collect::<Map<_, _>>())
        }
    }
}

fn collect_variables<'a>(node: &'a Node, out: &mut Vec<&'a [Segment]>) {
    match node {
        Node::Fixed(_) => {}
        Node::Text(t) => out.extend(t.variables()),
        Node::Whole(path) => out.push(path),
        Node::Array(items) => items.iter().for_each(|n| collect_variables(n, out)),
        Node::Object(entries) => entries.iter().for_each(|(_, n)| collect_variables(n, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "record": {"id": 7, "name": "Ada & Bob/ü", "paid": true, "none": null,
                       "customer": {"emails": ["a@b.c", "d@e.f"]}, "tags": ["x", "y"]},
            "connection": {"encrypted": {"token": "s3cr3t"}},
            "lastExportDateTime": "2024-01-02T03:04:05Z"
        })
    }

    #[test]
    fn renders_values_by_kind() {
        let t = Template::parse(
            "id={{record.id}} n={{ record.name }} p={{record.paid}} z={{record.none}} m={{record.missing}} \
             e={{record.customer.emails[1]}} t={{record.tags}} c={{record.customer}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&ctx()),
            r#"id=7 n=Ada & Bob/ü p=true z= m= e=d@e.f t=["x","y"] c={"emails":["a@b.c","d@e.f"]}"#
        );
        assert!(!t.is_plain());
        assert_eq!(t.variables().count(), 8);
        let plain = Template::parse("/orders?x=1 } { }}").unwrap();
        assert!(plain.is_plain());
        assert_eq!(plain.render(&ctx()), "/orders?x=1 } { }}");
        assert_eq!(Template::parse("").unwrap().render(&ctx()), "");
    }

    #[test]
    fn url_rendering_encodes_only_values() {
        let t = Template::parse("/customers/{{record.name}}?since={{lastExportDateTime}}&a=b c").unwrap();
        assert_eq!(t.render_url(&ctx()), "/customers/Ada%20%26%20Bob%2F%C3%BC?since=2024-01-02T03%3A04%3A05Z&a=b c");
    }

    #[test]
    fn bad_templates_name_the_problem_and_offset() {
        let cases = [
            ("abc {{record.id", "unclosed `{{` at offset 4"),
            ("x{{}}", "empty `{{}}` at offset 1"),
            ("x{{  }}", "empty"),
            ("{{#if record.id}}a{{/if}}", "helpers are not supported"),
            ("ab{{> partial}}", "helpers are not supported"),
            ("{{{record.id}}}", "helpers are not supported"),
            ("{{lookup record 'id'}}", "helpers are not supported"),
            ("a {{record..id}}", "bad path `record..id` at offset 2"),
            ("{{a[x]}}", "bad path"),
        ];
        for (text, want) in cases {
            let err = Template::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn json_templates_keep_types_of_whole_variables() {
        let body = json!({
            "id": "{{record.id}}",
            "label": "#{{record.id}} {{record.name}}",
            "customer": "{{ record.customer }}",
            "missing": "{{record.missing}}",
            "fixed": [1, "two", null, {"k": "{{connection.encrypted.token}}"}],
        });
        let t = JsonTemplate::parse("body", &body).unwrap();
        assert_eq!(
            t.render(&ctx()),
            json!({"id": 7, "label": "#7 Ada & Bob/ü", "customer": {"emails": ["a@b.c", "d@e.f"]},
                   "missing": null, "fixed": [1, "two", null, {"k": "s3cr3t"}]})
        );
        assert_eq!(t.variables().len(), 6);
    }

    #[test]
    fn bad_json_templates_name_each_leaf() {
        let Invalid(found) =
            JsonTemplate::parse("pageProcessors[0].body", &json!({"a": "{{x", "b": [1, "{{#each}}"]})).unwrap_err();
        let fields: Vec<(&str, &str)> = found.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        assert_eq!(fields, [("pageProcessors[0].body.a", "template"), ("pageProcessors[0].body.b[1]", "template")]);
    }
}
