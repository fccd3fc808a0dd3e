//! An export event's values in its columns' types ([`crate::export::columns`]): what a
//! Parquet part appends. The normalising threads convert each event as they prepare it,
//! so the one thread that keeps lake order (and alone fills a part's columns) only copies
//! numbers and text; parsing 49 values there made it the pipeline's serial bottleneck.

use crate::export::columns::{column_type, ColumnType};
use crate::export::schema::{ExportEvent, EXPORT_FIELDS};

/// One value in its column's type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Null,
    /// An Int64 column's value, or a timestamp's microseconds since the epoch.
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A String or Json column's text: a range of [`TypedRow::text`].
    Text {
        start: u32,
        end: u32,
    },
}

/// The 49 cells of one event, with the text they point into.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypedRow {
    cells: Vec<Cell>,
    text: String,
    /// Bytes of the event's JSON line (newline included): parts roll over on this measure
    /// whatever their format.
    json_len: u64,
}

/// A value the normaliser let through that its column cannot hold: a bug, not bad input
/// (the normaliser checks every value against its column, see [`crate::export::value_limits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconvertible(pub String);

impl TypedRow {
    /// Converts `event` (its field policy already applied).
    pub fn fill(&mut self, event: &ExportEvent) -> Result<(), Unconvertible> {
        self.cells.clear();
        self.text.clear();
        self.json_len = event.line.len() as u64;
        let line = std::str::from_utf8(&event.line).map_err(|_| Unconvertible("the export line is not UTF-8".into()))?;
        for index in 0..EXPORT_FIELDS.len() {
            let (start, end) = event.field_span(index);
            let raw = &line[start..end];
            let cell = match column_type(index) {
                ColumnType::Timestamp => event.timestamp(index).map_or(Cell::Null, Cell::Int),
                _ if raw == "null" => Cell::Null,
                ColumnType::Int64 => Cell::Int(raw.parse().map_err(|_| unconvertible(index, raw))?),
                ColumnType::Float64 => Cell::Float(raw.parse().map_err(|_| unconvertible(index, raw))?),
                ColumnType::Boolean => match raw {
                    "true" => Cell::Bool(true),
                    "false" => Cell::Bool(false),
                    _ => return Err(unconvertible(index, raw)),
                },
                // A string's content, its escapes (rare in ids and names) decoded.
                ColumnType::String if raw.starts_with('"') && !raw.contains('\\') => self.push_text(&raw[1..raw.len() - 1]),
                ColumnType::String if raw.starts_with('"') => {
                    let decoded: String = serde_json::from_str(raw).map_err(|_| unconvertible(index, raw))?;
                    self.push_text(&decoded)
                }
                // JSON columns keep the JSON text; a scalar string column (`sample_rate`) its text.
                ColumnType::String | ColumnType::Json => self.push_text(raw),
            };
            self.cells.push(cell);
        }
        Ok(())
    }

    fn push_text(&mut self, s: &str) -> Cell {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Cell::Text { start, end: self.text.len() as u32 }
    }

    /// Whether the row holds an event (it is empty until [`Self::fill`] succeeds).
    pub fn is_filled(&self) -> bool {
        self.cells.len() == EXPORT_FIELDS.len()
    }

    pub fn clear(&mut self) {
        self.cells.clear();
        self.text.clear();
        self.json_len = 0;
    }

    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// The text a [`Cell::Text`] points at.
    pub fn text(&self, start: u32, end: u32) -> &str {
        &self.text[start as usize..end as usize]
    }

    pub fn json_len(&self) -> u64 {
        self.json_len
    }
}

fn unconvertible(index: usize, raw: &str) -> Unconvertible {
    let shown: String = raw.chars().take(40).collect();
    Unconvertible(format!("export field {} holds {shown} where its column type needs otherwise", EXPORT_FIELDS[index]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::schema::Normalizer;
    use crate::export::timestamp::TimestampFormat;

    fn index(name: &str) -> usize {
        EXPORT_FIELDS.iter().position(|f| *f == name).unwrap()
    }

    #[test]
    fn every_column_type_converts_and_text_points_at_decoded_content() {
        let line = br#"{"event_type":"play \"x\"","device_id":"d1","$insert_id":"i1","amplitude_id":"0042","location_lat":48.5,"paying":"true","sample_rate":0.5,"event_properties":{"k":"v\n"},"server_received_time":"2020-01-25 17:00:01.5","user_id":null}"#;
        let mut event = ExportEvent::default();
        Normalizer::new("187520", TimestampFormat::Amplitude).normalize(line, &mut event).unwrap();
        event.line.push(b'\n');
        let mut row = TypedRow::default();
        row.fill(&event).unwrap();
        assert!(row.is_filled());
        assert_eq!(row.json_len(), event.line.len() as u64);
        let cell = |name: &str| row.cells()[index(name)];
        let text = |name: &str| match cell(name) {
            Cell::Text { start, end } => row.text(start, end).to_string(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(cell("amplitude_id"), Cell::Int(42));
        assert_eq!(cell("app"), Cell::Int(187520), "a missing app is the project");
        assert_eq!(cell("location_lat"), Cell::Float(48.5));
        assert_eq!(cell("paying"), Cell::Bool(true));
        assert_eq!(cell("user_id"), Cell::Null);
        assert_eq!(cell("location_lng"), Cell::Null);
        assert_eq!(cell("server_received_time"), Cell::Int(1_579_971_601_500_000));
        assert_eq!(text("event_type"), "play \"x\"");
        assert_eq!(text("device_id"), "d1");
        assert_eq!(text("sample_rate"), "0.5");
        assert_eq!(text("event_properties"), r#"{"k":"v\n"}"#, "JSON columns keep their JSON text");
        row.clear();
        assert!(!row.is_filled());
    }
}
