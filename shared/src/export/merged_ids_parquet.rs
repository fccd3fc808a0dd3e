//! A Delta connection's merged IDs as one Parquet file per hour export: the five
//! [`MERGE_FIELDS`] as nullable INT64 columns, zstd like the event parts. A Delta table
//! holds Parquet files only, so this is what makes the merged-IDs folder a second table.
//!
//! An hour's merges are a few integers per record, so the file is built in memory and
//! uploaded whole (no streaming as for event parts).

use std::sync::Arc;

use arrow_array::builder::Int64Builder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{ExportError, Result};
use crate::export::merged_ids::{MergeRow, MERGE_FIELDS};
use crate::export::parquet_parts::ZSTD_LEVEL;

/// Rows per row group (a file of an hour's merges is normally one).
const ROW_GROUP_ROWS: usize = 1 << 20;

/// The Arrow schema of a merged-IDs Parquet file.
pub fn merged_ids_arrow_schema() -> SchemaRef {
    Arc::new(Schema::new(MERGE_FIELDS.iter().map(|name| Field::new(*name, DataType::Int64, true)).collect::<Vec<_>>()))
}

/// The columns of one merged-IDs file being filled.
pub struct MergedIdsColumns {
    columns: Vec<Int64Builder>,
    rows: u64,
}

impl Default for MergedIdsColumns {
    fn default() -> Self {
        MergedIdsColumns { columns: MERGE_FIELDS.iter().map(|_| Int64Builder::new()).collect(), rows: 0 }
    }
}

fn parquet_error(e: impl std::fmt::Display) -> ExportError {
    ExportError::Internal(format!("merged IDs parquet encoding failed: {e}"))
}

impl MergedIdsColumns {
    pub fn push(&mut self, row: &MergeRow) {
        for (column, value) in self.columns.iter_mut().zip(row) {
            column.append_option(*value);
        }
        self.rows += 1;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The Parquet file and the uncompressed size of its row groups.
    pub fn finish(mut self) -> Result<(Vec<u8>, u64)> {
        let schema = merged_ids_arrow_schema();
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(parquet_error)?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).map_err(parquet_error)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, Some(properties)).map_err(parquet_error)?;
        writer.write(&batch).map_err(parquet_error)?;
        writer.flush().map_err(parquet_error)?;
        let uncompressed = writer.flushed_row_groups().iter().map(|g| g.total_byte_size().max(0) as u64).sum();
        writer.close().map_err(parquet_error)?;
        Ok((out, uncompressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn merged_ids_read_back_as_five_nullable_longs() {
        let mut cols = MergedIdsColumns::default();
        cols.push(&[Some(1), Some(1_579_971_600_000), None, Some(10), Some(20)]);
        cols.push(&[None, None, Some(5), Some(11), Some(21)]);
        assert_eq!(cols.rows(), 2);
        let (bytes, uncompressed) = cols.finish().unwrap();
        assert!(uncompressed > 0);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        // The footer names the codec, not its level.
        assert!(matches!(reader.metadata().row_group(0).column(0).compression(), Compression::ZSTD(_)));
        let batch = reader.build().unwrap().next().unwrap().unwrap();
        assert_eq!(batch.schema(), merged_ids_arrow_schema());
        let col = |i: usize| batch.column(i).as_any().downcast_ref::<Int64Array>().unwrap().iter().collect::<Vec<_>>();
        assert_eq!(col(0), vec![Some(1), None]);
        assert_eq!(col(2), vec![None, Some(5)]);
        assert_eq!(col(4), vec![Some(20), Some(21)]);
    }
}
