//! Filter conditions a connection may carry. The JSON form, checked when the connection
//! is loaded (a bad filter is refused with the path of the bad part):
//!
//! ```json
//! {"all": [ {"event_type": {"in": ["purchase", "signup"]}},
//!           {"not": {"user_property": "internal", "op": "eq", "value": true}},
//!           {"any": [ {"event_property": "amount", "op": "gt", "value": 10},
//!                     {"field": "country", "op": "exists"} ]} ]}
//! ```
//! Leaves: `event_type` `in`/`not_in`; `event_property`, `user_property` or `field`
//! (a top-level export field) with `op` one of `eq ne contains exists gt lt`.

use serde_json::Value;

use crate::error::{ExportError, Result};

/// Where a property lives in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A top-level export field (`platform`, `country`, ...).
    Field,
    EventProperty,
    UserProperty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Contains,
    Exists,
    Gt,
    Lt,
}

const OPS: &str = "eq, ne, contains, exists, gt, lt";

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    EventTypeIn(Vec<String>),
    EventTypeNotIn(Vec<String>),
    Compare { scope: Scope, name: String, op: Op, value: Option<Value> },
}

/// What a filter reads from an event.
pub trait FilterSubject {
    fn event_type(&self) -> Option<String>;
    fn lookup(&self, scope: Scope, name: &str) -> Option<Value>;
}

impl Filter {
    /// Parses and checks a filter document.
    pub fn parse(doc: &Value) -> Result<Filter> {
        parse_at(doc, "filter")
    }

    pub fn matches(&self, event: &dyn FilterSubject) -> bool {
        match self {
            Filter::All(fs) => fs.iter().all(|f| f.matches(event)),
            Filter::Any(fs) => fs.iter().any(|f| f.matches(event)),
            Filter::Not(f) => !f.matches(event),
            Filter::EventTypeIn(types) => event.event_type().is_some_and(|t| types.contains(&t)),
            Filter::EventTypeNotIn(types) => !event.event_type().is_some_and(|t| types.contains(&t)),
            Filter::Compare { scope, name, op, value } => {
                let actual = event.lookup(*scope, name).filter(|v| !v.is_null());
                compare(actual.as_ref(), *op, value.as_ref())
            }
        }
    }

    /// Whether evaluating the filter needs user or event properties (to parse them lazily).
    pub fn uses_scope(&self, scope: Scope) -> bool {
        match self {
            Filter::All(fs) | Filter::Any(fs) => fs.iter().any(|f| f.uses_scope(scope)),
            Filter::Not(f) => f.uses_scope(scope),
            Filter::EventTypeIn(_) | Filter::EventTypeNotIn(_) => false,
            Filter::Compare { scope: s, .. } => *s == scope,
        }
    }
}

fn compare(actual: Option<&Value>, op: Op, expected: Option<&Value>) -> bool {
    match op {
        Op::Exists => actual.is_some(),
        Op::Eq => actual.is_some_and(|a| values_equal(a, expected.unwrap_or(&Value::Null))),
        Op::Ne => !actual.is_some_and(|a| values_equal(a, expected.unwrap_or(&Value::Null))),
        Op::Contains => match (actual, expected) {
            (Some(Value::String(a)), Some(Value::String(e))) => a.contains(e.as_str()),
            (Some(Value::Array(items)), Some(e)) => items.iter().any(|i| values_equal(i, e)),
            _ => false,
        },
        Op::Gt | Op::Lt => {
            let ord = match (actual, expected) {
                (Some(Value::Number(a)), Some(Value::Number(e))) => a.as_f64().zip(e.as_f64()).and_then(|(a, e)| a.partial_cmp(&e)),
                (Some(Value::String(a)), Some(Value::String(e))) => Some(a.as_str().cmp(e.as_str())),
                // A numeric string property compared with a number: compare numerically.
                (Some(Value::String(a)), Some(Value::Number(e))) => a.parse::<f64>().ok().zip(e.as_f64()).and_then(|(a, e)| a.partial_cmp(&e)),
                _ => None,
            };
            matches!((op, ord), (Op::Gt, Some(std::cmp::Ordering::Greater)) | (Op::Lt, Some(std::cmp::Ordering::Less)))
        }
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn bad(path: &str, problem: impl Into<String>) -> ExportError {
    ExportError::invalid_config(path, problem, "See README: Filters for the filter syntax.")
}

fn parse_at(doc: &Value, path: &str) -> Result<Filter> {
    let obj = doc.as_object().ok_or_else(|| bad(path, format!("expected an object, got {}", kind(doc))))?;
    if let Some(list) = obj.get("all").or_else(|| obj.get("any")) {
        let is_all = obj.contains_key("all");
        let name = if is_all { "all" } else { "any" };
        expect_only(obj, &[name], path)?;
        let items = list.as_array().ok_or_else(|| bad(&format!("{path}.{name}"), "expected a list of conditions"))?;
        if items.is_empty() {
            return Err(bad(&format!("{path}.{name}"), "is empty; give at least one condition"));
        }
        let parsed = items.iter().enumerate().map(|(i, f)| parse_at(f, &format!("{path}.{name}[{i}]"))).collect::<Result<Vec<_>>>()?;
        return Ok(if is_all { Filter::All(parsed) } else { Filter::Any(parsed) });
    }
    if let Some(inner) = obj.get("not") {
        expect_only(obj, &["not"], path)?;
        return Ok(Filter::Not(Box::new(parse_at(inner, &format!("{path}.not"))?)));
    }
    if let Some(spec) = obj.get("event_type") {
        expect_only(obj, &["event_type"], path)?;
        let p = format!("{path}.event_type");
        let spec = spec.as_object().ok_or_else(|| bad(&p, "expected {\"in\": [...]} or {\"not_in\": [...]}"))?;
        let (negate, list) = match (spec.get("in"), spec.get("not_in")) {
            (Some(l), None) if spec.len() == 1 => (false, l),
            (None, Some(l)) if spec.len() == 1 => (true, l),
            _ => return Err(bad(&p, "expected exactly one of \"in\" or \"not_in\"")),
        };
        let types = list
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad(&p, "expected a non-empty list of event type names"))?
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(&p, format!("event type names must be strings, got {}", kind(v)))))
            .collect::<Result<Vec<_>>>()?;
        return Ok(if negate { Filter::EventTypeNotIn(types) } else { Filter::EventTypeIn(types) });
    }
    let (scope, key) = if obj.contains_key("event_property") {
        (Scope::EventProperty, "event_property")
    } else if obj.contains_key("user_property") {
        (Scope::UserProperty, "user_property")
    } else if obj.contains_key("field") {
        (Scope::Field, "field")
    } else {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        return Err(bad(path, format!("unknown condition {keys:?}; use all, any, not, event_type, event_property, user_property or field")));
    };
    expect_only(obj, &[key, "op", "value"], path)?;
    let name = obj[key].as_str().filter(|s| !s.is_empty()).ok_or_else(|| bad(&format!("{path}.{key}"), "expected a property name"))?;
    if scope == Scope::Field && !crate::export::schema::EXPORT_FIELDS.contains(&name) {
        return Err(bad(&format!("{path}.field"), format!("{name:?} is not an export field")));
    }
    let op_text = obj.get("op").and_then(Value::as_str).ok_or_else(|| bad(&format!("{path}.op"), format!("missing; use one of {OPS}")))?;
    let op = match op_text {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "contains" => Op::Contains,
        "exists" => Op::Exists,
        "gt" => Op::Gt,
        "lt" => Op::Lt,
        other => return Err(bad(&format!("{path}.op"), format!("unknown operator {other:?}; use one of {OPS}"))),
    };
    let value = obj.get("value").cloned();
    match (op, &value) {
        (Op::Exists, Some(_)) => return Err(bad(&format!("{path}.value"), "exists takes no value (wrap in not for absence)")),
        (Op::Exists, None) => {}
        (_, None) => return Err(bad(&format!("{path}.value"), format!("operator {op_text} needs a value"))),
        (Op::Gt | Op::Lt, Some(v)) if !(v.is_number() || v.is_string()) => {
            return Err(bad(&format!("{path}.value"), format!("{op_text} compares numbers or strings, got {}", kind(v))))
        }
        (Op::Contains, Some(v)) if v.is_object() || v.is_array() => return Err(bad(&format!("{path}.value"), "contains takes a string or a single value")),
        _ => {}
    }
    Ok(Filter::Compare { scope, name: name.to_string(), op, value })
}

fn expect_only(obj: &serde_json::Map<String, Value>, allowed: &[&str], path: &str) -> Result<()> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(bad(path, format!("unexpected key {k:?} next to {:?}", allowed[0])));
        }
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Ev(Value);
    impl FilterSubject for Ev {
        fn event_type(&self) -> Option<String> {
            self.0["event_type"].as_str().map(str::to_string)
        }
        fn lookup(&self, scope: Scope, name: &str) -> Option<Value> {
            let v = match scope {
                Scope::Field => self.0.get(name),
                Scope::EventProperty => self.0["event_properties"].get(name),
                Scope::UserProperty => self.0["user_properties"].get(name),
            };
            v.cloned()
        }
    }

    fn ev() -> Ev {
        Ev(json!({"event_type": "purchase", "country": "France", "platform": "iOS",
            "event_properties": {"amount": 25.5, "tags": ["a", "b"], "sku": "X-12"},
            "user_properties": {"plan": "pro", "age": "41"}}))
    }

    fn check(f: Value) -> bool {
        Filter::parse(&f).unwrap().matches(&ev())
    }

    #[test]
    fn every_operator() {
        assert!(check(json!({"event_type": {"in": ["purchase", "x"]}})));
        assert!(!check(json!({"event_type": {"not_in": ["purchase"]}})));
        assert!(check(json!({"event_property": "amount", "op": "eq", "value": 25.5})));
        assert!(check(json!({"user_property": "plan", "op": "ne", "value": "free"})));
        assert!(!check(json!({"user_property": "plan", "op": "ne", "value": "pro"})));
        assert!(check(json!({"event_property": "sku", "op": "contains", "value": "X-"})));
        assert!(check(json!({"event_property": "tags", "op": "contains", "value": "b"})));
        assert!(check(json!({"field": "country", "op": "exists"})));
        assert!(!check(json!({"field": "city", "op": "exists"})));
        assert!(check(json!({"event_property": "amount", "op": "gt", "value": 10})));
        assert!(!check(json!({"event_property": "amount", "op": "lt", "value": 10})));
        assert!(check(json!({"user_property": "age", "op": "gt", "value": 40})));
        assert!(check(json!({"all": [{"field": "platform", "op": "eq", "value": "iOS"}, {"not": {"field": "country", "op": "eq", "value": "Spain"}}]})));
        assert!(check(json!({"any": [{"field": "platform", "op": "eq", "value": "Android"}, {"event_type": {"in": ["purchase"]}}]})));
        assert!(!check(json!({"any": [{"field": "platform", "op": "eq", "value": "Android"}, {"event_type": {"in": ["signup"]}}]})));
    }

    #[test]
    fn bad_filters_name_the_bad_part() {
        let cases = [
            (json!({"all": [{"field": "country", "op": "equals", "value": 1}]}), "filter.all[0].op"),
            (json!({"all": []}), "filter.all"),
            (json!({"event_type": {"in": []}}), "filter.event_type"),
            (json!({"event_type": {"in": [1]}}), "filter.event_type"),
            (json!({"field": "no_such_field", "op": "exists"}), "filter.field"),
            (json!({"event_property": "a", "op": "gt", "value": [1]}), "filter.value"),
            (json!({"event_property": "a", "op": "eq"}), "filter.value"),
            (json!({"event_property": "a", "op": "exists", "value": 1}), "filter.value"),
            (json!({"any": [{"not": "x"}]}), "filter.any[0].not"),
            (json!({"whatever": 1}), "filter"),
            (json!([1]), "filter"),
        ];
        for (doc, path) in cases {
            let err = Filter::parse(&doc).unwrap_err().to_string();
            assert!(err.contains(path), "{doc}: {err}");
        }
    }
}
