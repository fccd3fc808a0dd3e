//! Figures an operator graphs and alarms on, and their two renderings: CloudWatch Embedded
//! Metric Format (one JSON log line, turned into metrics by CloudWatch Logs with no API call
//! or permission) and the Prometheus text exposition format (`exportctl metrics`, for a
//! scrape or node_exporter's textfile collector).

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// The CloudWatch namespace every figure is published under.
pub const NAMESPACE: &str = "EventExport";

/// What a figure counts, as CloudWatch names units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Bytes,
    Megabytes,
    /// A ratio between 0 and 1 (CloudWatch: `None`).
    Ratio,
}

impl Unit {
    pub fn cloudwatch_name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
            Unit::Megabytes => "Megabytes",
            Unit::Ratio => "None",
        }
    }
}

/// One figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// `PascalCase`, as CloudWatch shows it (`EventsExported`).
    pub name: &'static str,
    pub unit: Unit,
    pub value: f64,
    /// One line for `# HELP`.
    pub help: &'static str,
}

/// Figures measured together, with the dimensions they are published by.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSet {
    pub timestamp: DateTime<Utc>,
    /// `(name, value)`, e.g. `("Stack", "event-export")`, `("Outcome", "exported")`.
    pub dimensions: Vec<(String, String)>,
    pub metrics: Vec<Metric>,
    /// Context logged beside the figures but not a dimension (connection, hour): searchable in
    /// CloudWatch Logs Insights at no metric cost.
    pub properties: Vec<(String, String)>,
}

impl MetricSet {
    pub fn new(timestamp: DateTime<Utc>, dimensions: Vec<(String, String)>) -> Self {
        MetricSet { timestamp, dimensions, metrics: Vec::new(), properties: Vec::new() }
    }

    pub fn add(&mut self, name: &'static str, unit: Unit, value: f64, help: &'static str) -> &mut Self {
        self.metrics.push(Metric { name, unit, value, help });
        self
    }

    pub fn property(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.properties.push((name.to_string(), value.into()));
        self
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }

    /// The set as one Embedded Metric Format log line: the `_aws` metadata (timestamp in
    /// milliseconds, one directive with the namespace, the dimension set and each metric's
    /// name and unit), then every dimension, property and metric value as a top-level member.
    pub fn to_emf(&self) -> String {
        let mut root = Map::new();
        let dimension_names: Vec<Value> = self.dimensions.iter().map(|(k, _)| Value::from(k.as_str())).collect();
        let definitions: Vec<Value> = self.metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit.cloudwatch_name()})).collect();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": self.timestamp.timestamp_millis(),
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dimension_names], "Metrics": definitions}],
            }),
        );
        for (k, v) in self.dimensions.iter().chain(self.properties.iter()) {
            root.insert(k.clone(), Value::from(v.as_str()));
        }
        for m in &self.metrics {
            root.insert(m.name.into(), number(m.value));
        }
        Value::Object(root).to_string()
    }
}

/// Whole numbers as JSON integers (so `3` is not written `3.0`).
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

/// `EventsExported` → `event_export_events_exported`, with the unit's suffix where the
/// Prometheus conventions want one (`_seconds`, `_bytes`, `_ratio`).
pub fn prometheus_name(name: &str, unit: Unit) -> String {
    let mut snake = String::from("event_export_");
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    let suffix = match unit {
        Unit::Seconds => "_seconds",
        Unit::Bytes => "_bytes",
        Unit::Megabytes => "_megabytes",
        Unit::Ratio => "_ratio",
        Unit::Count => "",
    };
    if !suffix.is_empty() && !snake.ends_with(suffix) {
        snake.push_str(suffix);
    }
    snake
}

/// Label values escaped as the text format requires (`\\`, `\"`, `\n`).
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Several sets as one Prometheus text exposition (format 0.0.4): each metric name once,
/// with its `# HELP` and `# TYPE gauge` lines, then one sample per set that has it, labelled
/// with the set's dimensions (snake_case).
pub fn to_prometheus(sets: &[MetricSet]) -> String {
    let mut names: Vec<(&'static str, Unit, &'static str)> = Vec::new();
    for m in sets.iter().flat_map(|s| s.metrics.iter()) {
        if !names.iter().any(|(n, _, _)| *n == m.name) {
            names.push((m.name, m.unit, m.help));
        }
    }
    let mut out = String::new();
    for (name, unit, help) in names {
        let prom = prometheus_name(name, unit);
        let _ = writeln!(out, "# HELP {prom} {help}");
        let _ = writeln!(out, "# TYPE {prom} gauge");
        for set in sets {
            let Some(value) = set.value(name) else { continue };
            let labels: Vec<String> = set.dimensions.iter().map(|(k, v)| format!("{}=\"{}\"", label_name(k), label_value(v))).collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(out, "{prom}{labels} {value}");
        }
    }
    out
}

/// `Stack` → `stack`, `ConnectionId` → `connection_id`.
fn label_name(k: &str) -> String {
    prometheus_name(k, Unit::Count).trim_start_matches("event_export_").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> MetricSet {
        let t = DateTime::parse_from_rfc3339("2020-01-25T18:20:00Z").unwrap().with_timezone(&Utc);
        let mut s = MetricSet::new(t, vec![("Stack".into(), "event-export".into()), ("Outcome".into(), "exported".into())]);
        s.add("EventsExported", Unit::Count, 1526.0, "events written").add("FreshnessSeconds", Unit::Seconds, 1262.5, "marker time minus hour end");
        s.property("connection", "c1");
        s
    }

    #[test]
    fn emf_has_the_metadata_and_every_value_at_the_top() {
        let line: Value = serde_json::from_str(&set().to_emf()).unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1579976400000i64);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Stack", "Outcome"]]));
        assert_eq!(directive["Metrics"], json!([{"Name": "EventsExported", "Unit": "Count"}, {"Name": "FreshnessSeconds", "Unit": "Seconds"}]));
        assert_eq!((line["Stack"].as_str(), line["Outcome"].as_str(), line["connection"].as_str()), (Some("event-export"), Some("exported"), Some("c1")));
        assert_eq!(line["EventsExported"], json!(1526));
        assert_eq!(line["FreshnessSeconds"], json!(1262.5));
    }

    #[test]
    fn prometheus_names_each_metric_once_with_help_and_type() {
        let mut other = set();
        other.dimensions[1].1 = "fa\"iled\n".into();
        other.metrics.truncate(1);
        let text = to_prometheus(&[set(), other]);
        assert_eq!(text.matches("# TYPE event_export_events_exported gauge").count(), 1);
        assert!(text.contains("event_export_events_exported{stack=\"event-export\",outcome=\"exported\"} 1526\n"), "{text}");
        assert!(text.contains("outcome=\"fa\\\"iled\\n\"} 1526\n"), "{text}");
        assert!(text.contains("# HELP event_export_freshness_seconds marker time minus hour end\n"), "{text}");
        assert_eq!(text.matches("event_export_freshness_seconds{").count(), 1);
    }
}
