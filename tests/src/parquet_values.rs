//! Parquet cells read back as the JSON values the JSON parts write for them, so a test can
//! compare the two formats value by value.

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use exporter::export::columns::ColumnType;
use serde_json::Value;

/// Row `r` of a column of the export schema, as a JSON value (timestamps as microseconds).
pub fn parquet_cell(array: &dyn Array, r: usize, column_type: ColumnType) -> Value {
    if array.is_null(r) {
        return Value::Null;
    }
    let any = array.as_any();
    match column_type {
        ColumnType::Timestamp => Value::from(any.downcast_ref::<TimestampMicrosecondArray>().unwrap().value(r)),
        ColumnType::Int64 => Value::from(any.downcast_ref::<Int64Array>().unwrap().value(r)),
        ColumnType::Float64 => Value::from(any.downcast_ref::<Float64Array>().unwrap().value(r)),
        ColumnType::Boolean => Value::from(any.downcast_ref::<BooleanArray>().unwrap().value(r)),
        ColumnType::Json => serde_json::from_str(any.downcast_ref::<StringArray>().unwrap().value(r)).unwrap(),
        ColumnType::String => Value::from(any.downcast_ref::<StringArray>().unwrap().value(r)),
    }
}
