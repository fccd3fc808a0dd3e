//! The typed columns of the export schema: one table behind the Parquet parts and every
//! engine's table DDL, so a reader's types never disagree with what was written.
//!
//! | export value                         | column type | Parquet / Arrow                  |
//! |--------------------------------------|-------------|----------------------------------|
//! | the 7 timestamps                     | Timestamp   | INT64 TIMESTAMP(MICROS, UTC)     |
//! | `app`, `$schema`, ids, `session_id`  | Int64       | INT64                            |
//! | `location_lat`, `location_lng`       | Float64     | DOUBLE                           |
//! | `paying`, `is_attribution_event`     | Boolean     | BOOLEAN                          |
//! | property maps, `groups`, `data`, `amplitude_attribution_ids` | Json | STRING (JSON text) |
//! | every other field                    | String      | STRING                           |
//!
//! Property maps stay JSON text on purpose: their keys change from hour to hour, and a
//! struct column would change the file schema with them and break readers of old hours.

use crate::export::schema::{field_kind, FieldKind, EXPORT_FIELDS};

/// A column's type, independent of any engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    Int64,
    Float64,
    Boolean,
    /// Text holding a JSON value (an object, or a list for `amplitude_attribution_ids`).
    Json,
    String,
}

/// One column of the export schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The field name, as in the JSON lines (`$schema` and `$insert_id` included).
    pub name: &'static str,
    pub column_type: ColumnType,
}

/// The type of export field `index` (see [`EXPORT_FIELDS`]).
pub fn column_type(index: usize) -> ColumnType {
    match field_kind(index) {
        FieldKind::Timestamp => ColumnType::Timestamp,
        FieldKind::Int => ColumnType::Int64,
        FieldKind::Float => ColumnType::Float64,
        FieldKind::Bool => ColumnType::Boolean,
        FieldKind::Dict | FieldKind::Any => ColumnType::Json,
        // `sample_rate` (any scalar) is kept as its text, like the other strings.
        FieldKind::Str | FieldKind::Uuid | FieldKind::Scalar => ColumnType::String,
    }
}

/// Every column, in the export's field order.
pub fn export_columns() -> impl Iterator<Item = Column> {
    EXPORT_FIELDS.iter().enumerate().map(|(i, name)| Column { name, column_type: column_type(i) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_types_every_field_as_documented() {
        let of = |name: &str| export_columns().find(|c| c.name == name).unwrap().column_type;
        for t in ["server_received_time", "event_time", "processed_time", "user_creation_time", "client_upload_time", "server_upload_time", "client_event_time"]
        {
            assert_eq!(of(t), ColumnType::Timestamp, "{t}");
        }
        for t in ["app", "$schema", "amplitude_id", "event_id", "session_id"] {
            assert_eq!(of(t), ColumnType::Int64, "{t}");
        }
        for t in ["event_properties", "user_properties", "group_properties", "groups", "data", "amplitude_attribution_ids"] {
            assert_eq!(of(t), ColumnType::Json, "{t}");
        }
        assert_eq!(of("paying"), ColumnType::Boolean);
        assert_eq!(of("is_attribution_event"), ColumnType::Boolean);
        assert_eq!(of("location_lat"), ColumnType::Float64);
        assert_eq!(of("uuid"), ColumnType::String);
        assert_eq!(of("sample_rate"), ColumnType::String);
        assert_eq!(export_columns().count(), 49);
    }
}
