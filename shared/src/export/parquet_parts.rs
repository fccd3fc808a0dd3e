//! Parquet parts: export events → typed columns ([`crate::export::columns`]) → one Parquet
//! file per part, zstd-compressed, streamed.
//!
//! The pipeline thread appends each event to column builders; every [`BATCH_ROWS`] rows the
//! finished arrays go to an encoding thread, which encodes the columns of the batch in
//! parallel on the compression pool while the pipeline fills the next batch. A row group
//! closes at [`ROW_GROUP_ROWS`] rows, [`ROW_GROUP_JSON_BYTES`] of event JSON or
//! [`ROW_GROUP_MEMORY_BYTES`] held by its column writers (encoded pages and dictionaries),
//! whichever comes first; its column chunks are then written out in schema order and leave
//! memory, so neither a part nor an unbounded row group is ever held. Each column is encoded
//! by one writer in one order and every limit is checked between the same batches, so the
//! bytes depend only on the events, never on the number of threads.

use std::io::Write;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{ExportError, Result};
use crate::export::columns::{column_type, export_columns, ColumnType};
use crate::export::parts::{CompressionPool, PartStats};
use crate::export::schema::{ExportEvent, EXPORT_FIELDS};

/// Rows per batch handed to the encoder (about 2 MiB of arrays; three are alive at once).
pub const BATCH_ROWS: usize = 2048;
/// A row group closes at this many rows...
pub const ROW_GROUP_ROWS: usize = 1 << 20;
/// ...or once its events held this much JSON (about the uncompressed size engines plan
/// row groups by; with the default part size a part is one row group).
pub const ROW_GROUP_JSON_BYTES: u64 = 128 << 20;
/// ...or once its column writers hold this much (encoded pages, dictionaries, the open
/// pages): what bounds an encoder's memory whatever the part size and the data.
pub const ROW_GROUP_MEMORY_BYTES: usize = 16 << 20;
/// Columns of (nearly) unique values: a dictionary cannot pay for itself there, yet it
/// would be built up to its size limit, held, and then thrown away in every row group.
const NO_DICTIONARY: [&str; 5] = ["uuid", "$insert_id", "device_id", "user_id", "amplitude_id"];

/// The columns written without a dictionary: [`NO_DICTIONARY`] and every timestamp
/// (microsecond instants, nearly one per event). Kept, the timestamps' dictionaries made the
/// parts 10 % larger (the bench hour, 98.0 MB against 87.8 MB) and cost 2.4 % more
/// instructions.
fn no_dictionary_columns() -> impl Iterator<Item = &'static str> {
    NO_DICTIONARY.into_iter().chain(export_columns().filter(|c| c.column_type == ColumnType::Timestamp).map(|c| c.name))
}
/// zstd level: zstd's own default, the usual speed/size balance for lake files.
pub const ZSTD_LEVEL: i32 = 3;
/// Bytes gathered before a chunk goes to the upload.
const CHUNK_BYTES: usize = 1 << 20;

/// The Arrow schema of every Parquet part (see the table in [`crate::export::columns`]).
pub fn arrow_schema() -> SchemaRef {
    let fields: Vec<Field> = export_columns()
        .map(|c| {
            let data_type = match c.column_type {
                ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                ColumnType::Int64 => DataType::Int64,
                ColumnType::Float64 => DataType::Float64,
                ColumnType::Boolean => DataType::Boolean,
                ColumnType::Json | ColumnType::String => DataType::Utf8,
            };
            Field::new(c.name, data_type, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn parquet_error(e: impl std::fmt::Display) -> ExportError {
    ExportError::Internal(format!("parquet encoding failed: {e}"))
}

/// One column of the batch being filled.
enum ColumnBuilder {
    Timestamp(TimestampMicrosecondBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
}

impl ColumnBuilder {
    fn new(column_type: ColumnType) -> Self {
        match column_type {
            ColumnType::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC")),
            ColumnType::Int64 => ColumnBuilder::Int(Int64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Float64 => ColumnBuilder::Float(Float64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(BATCH_ROWS)),
            ColumnType::Json | ColumnType::String => ColumnBuilder::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)),
        }
    }

    /// Appends export field `index` of `event`, whose JSON text is `raw` (a string with escapes
    /// only where the normaliser marked it so). The normaliser
    /// has already checked every value against its kind and against what Parquet and strict
    /// readers accept ([`crate::export::value_limits`]), so a value that does not convert is
    /// a bug, not bad input.
    fn append(&mut self, event: &ExportEvent, index: usize, raw: &str, json_column: bool) -> Result<()> {
        let null = raw == "null";
        let unconvertible = || {
            let shown: String = raw.chars().take(40).collect();
            ExportError::Internal(format!("export field {} holds {shown} where its column type needs otherwise", EXPORT_FIELDS[index]))
        };
        match self {
            ColumnBuilder::Timestamp(b) => b.append_option(event.timestamp(index)),
            ColumnBuilder::Int(b) if null => b.append_null(),
            ColumnBuilder::Int(b) => b.append_value(raw.parse().map_err(|_| unconvertible())?),
            ColumnBuilder::Float(b) if null => b.append_null(),
            ColumnBuilder::Float(b) => b.append_value(raw.parse().map_err(|_| unconvertible())?),
            ColumnBuilder::Bool(b) => match raw {
                "true" => b.append_value(true),
                "false" => b.append_value(false),
                "null" => b.append_null(),
                _ => return Err(unconvertible()),
            },
            ColumnBuilder::Text(b) if null => b.append_null(),
            ColumnBuilder::Text(b) => match raw.as_bytes()[0] {
                // A string's content; escapes (rare in ids and names) are decoded.
                b'"' if !json_column && !event.has_escapes(index) => b.append_value(&raw[1..raw.len() - 1]),
                b'"' if !json_column => b.append_value(serde_json::from_str::<String>(raw).map_err(|_| unconvertible())?),
                // JSON columns keep the JSON text; a scalar (`sample_rate`) its text.
                _ => b.append_value(raw),
            },
        }
        Ok(())
    }

    /// The batch's array; the builder starts the next batch at this one's size, so its
    /// buffers are allocated once a batch instead of regrowing (and fragmenting the heap).
    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Timestamp(b) => {
                let a = b.finish();
                *b = TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC");
                Arc::new(a)
            }
            ColumnBuilder::Int(b) => Arc::new(std::mem::replace(b, Int64Builder::with_capacity(BATCH_ROWS)).finish()),
            ColumnBuilder::Float(b) => Arc::new(std::mem::replace(b, Float64Builder::with_capacity(BATCH_ROWS)).finish()),
            ColumnBuilder::Bool(b) => Arc::new(std::mem::replace(b, BooleanBuilder::with_capacity(BATCH_ROWS)).finish()),
            ColumnBuilder::Text(b) => {
                let a = b.finish();
                let bytes = a.values().len();
                *b = StringBuilder::with_capacity(BATCH_ROWS, bytes + bytes / 8 + 64);
                Arc::new(a)
            }
        }
    }
}

enum StageMsg {
    Batch(Vec<ArrayRef>),
    EndRowGroup,
}

/// What the encoding thread hands back once the file is complete.
struct Written {
    bytes: u64,
    sha256: String,
    uncompressed_bytes: u64,
}

/// Streams one Parquet file: `write` events in, file bytes out to `sink` in order.
pub struct ParquetPartEncoder {
    limits: RowGroupLimits,
    builders: Vec<ColumnBuilder>,
    json_columns: Vec<bool>,
    rows_in_batch: usize,
    rows_in_group: usize,
    json_in_group: u64,
    json_bytes: u64,
    stage: mpsc::SyncSender<StageMsg>,
    encoder: JoinHandle<Result<Written>>,
}

/// When a row group closes.
#[derive(Debug, Clone, Copy)]
struct RowGroupLimits {
    rows: usize,
    json_bytes: u64,
    memory_bytes: usize,
}

impl ParquetPartEncoder {
    pub fn new<S: FnMut(Vec<u8>) -> Result<()> + Send + 'static>(pool: CompressionPool, sink: S) -> Result<Self> {
        Self::with_limits(pool, sink, RowGroupLimits { rows: ROW_GROUP_ROWS, json_bytes: ROW_GROUP_JSON_BYTES, memory_bytes: ROW_GROUP_MEMORY_BYTES })
    }

    fn with_limits<S: FnMut(Vec<u8>) -> Result<()> + Send + 'static>(pool: CompressionPool, sink: S, limits: RowGroupLimits) -> Result<Self> {
        let schema = arrow_schema();
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).map_err(parquet_error)?))
            .set_max_row_group_row_count(Some(limits.rows));
        for column in no_dictionary_columns() {
            properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        let properties = properties.build();
        let out = HashingSink { sink: Box::new(sink), buffer: Vec::with_capacity(CHUNK_BYTES), bytes: 0, sha: Sha256::new() };
        // Through ArrowWriter so the footer carries the Arrow schema (time zone included).
        let (file, factory) = ArrowWriter::try_new_with_options(out, schema.clone(), ArrowWriterOptions::new().with_properties(properties))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(parquet_error)?;
        let (stage, inbox) = mpsc::sync_channel(1);
        let encoder = std::thread::Builder::new()
            .name("parquet-part".into())
            .spawn(move || encode_file(file, factory, schema, pool, inbox, limits.memory_bytes))
            .map_err(|e| ExportError::Internal(format!("cannot start the parquet encoder: {e}")))?;
        let types: Vec<ColumnType> = (0..EXPORT_FIELDS.len()).map(column_type).collect();
        Ok(ParquetPartEncoder {
            limits,
            builders: types.iter().map(|t| ColumnBuilder::new(*t)).collect(),
            json_columns: types.iter().map(|t| *t == ColumnType::Json).collect(),
            rows_in_batch: 0,
            rows_in_group: 0,
            json_in_group: 0,
            json_bytes: 0,
            stage,
            encoder,
        })
    }

    /// Bytes of the events' JSON lines written so far: parts roll over on the same
    /// measure whatever their format, so the same events land in the same part numbers.
    pub fn uncompressed_len(&self) -> u64 {
        self.json_bytes
    }

    /// Appends one event; `event.line` may end with its newline.
    pub fn write(&mut self, event: &ExportEvent) -> Result<()> {
        // The line is checked as UTF-8 once, not once per field: 40 short checks an event
        // cost far more than one over the whole line.
        let line = std::str::from_utf8(&event.line).map_err(|e| ExportError::Internal(format!("an export line is not UTF-8: {e}")))?;
        for (i, builder) in self.builders.iter_mut().enumerate() {
            let raw = line.get(event.field_range(i)).ok_or_else(|| ExportError::Internal(format!("export field {} has no value", EXPORT_FIELDS[i])))?;
            builder.append(event, i, raw, self.json_columns[i])?;
        }
        self.rows_in_batch += 1;
        self.rows_in_group += 1;
        self.json_in_group += event.line.len() as u64;
        self.json_bytes += event.line.len() as u64;
        if self.rows_in_batch == BATCH_ROWS {
            self.send_batch()?;
        }
        if self.rows_in_group >= self.limits.rows || self.json_in_group >= self.limits.json_bytes {
            self.send_batch()?;
            self.send(StageMsg::EndRowGroup)?;
            self.rows_in_group = 0;
            self.json_in_group = 0;
        }
        Ok(())
    }

    fn send(&mut self, msg: StageMsg) -> Result<()> {
        // A closed channel means the encoder stopped on an error, which `finish` reports.
        self.stage.send(msg).map_err(|_| ExportError::Internal("parquet encoder stopped".into()))
    }

    fn send_batch(&mut self) -> Result<()> {
        if self.rows_in_batch == 0 {
            return Ok(());
        }
        let arrays = self.builders.iter_mut().map(ColumnBuilder::finish).collect();
        self.rows_in_batch = 0;
        self.send(StageMsg::Batch(arrays))
    }

    /// Ends the file (last row group and footer) and returns its stats.
    pub fn finish(mut self, events: u64) -> Result<PartStats> {
        let sent = self.send_batch();
        drop(self.stage);
        let written = self.encoder.join().map_err(|_| ExportError::Internal("parquet encoder panicked".into()))??;
        sent?;
        Ok(PartStats { events, uncompressed_bytes: written.uncompressed_bytes, compressed_bytes: written.bytes, sha256: written.sha256 })
    }
}

/// The encoding thread: batches in, row groups out, the footer once the inbox closes.
fn encode_file(
    mut file: SerializedFileWriter<HashingSink>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    pool: CompressionPool,
    inbox: mpsc::Receiver<StageMsg>,
    memory_bytes: usize,
) -> Result<Written> {
    let mut open: Option<Vec<ArrowColumnWriter>> = None;
    let mut row_groups = 0usize;
    let close_group = |file: &mut SerializedFileWriter<HashingSink>, writers: Vec<ArrowColumnWriter>| -> Result<()> {
        let chunks =
            pool.install(|| writers.into_par_iter().map(ArrowColumnWriter::close).collect::<std::result::Result<Vec<_>, _>>()).map_err(parquet_error)?;
        let mut group = file.next_row_group().map_err(parquet_error)?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group).map_err(parquet_error)?;
        }
        group.close().map_err(parquet_error)?;
        Ok(())
    };
    for msg in inbox {
        match msg {
            StageMsg::Batch(arrays) => {
                if open.is_none() {
                    open = Some(factory.create_column_writers(row_groups).map_err(parquet_error)?);
                    row_groups += 1;
                }
                let writers = open.as_mut().expect("opened above");
                let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(parquet_error)?;
                let mut leaves = Vec::with_capacity(writers.len());
                for (field, column) in schema.fields().iter().zip(batch.columns()) {
                    leaves.extend(compute_leaves(field, column).map_err(parquet_error)?);
                }
                pool.install(|| writers.par_iter_mut().zip(leaves).try_for_each(|(w, leaf)| w.write(&leaf))).map_err(parquet_error)?;
                if writers.iter().map(ArrowColumnWriter::memory_size).sum::<usize>() >= memory_bytes {
                    close_group(&mut file, open.take().expect("opened above"))?;
                }
            }
            StageMsg::EndRowGroup => {
                if let Some(writers) = open.take() {
                    close_group(&mut file, writers)?;
                }
            }
        }
    }
    if let Some(writers) = open.take() {
        close_group(&mut file, writers)?;
    }
    let uncompressed_bytes = file.flushed_row_groups().iter().map(|g| g.total_byte_size().max(0) as u64).sum();
    // Writes the footer and hands back the sink.
    let mut out = file.into_inner().map_err(parquet_error)?;
    out.flush_chunk()?;
    Ok(Written { bytes: out.bytes, sha256: hex::encode(out.sha.finalize()), uncompressed_bytes })
}

/// The file's bytes on their way to the upload, counted and hashed, in chunks.
struct HashingSink {
    sink: Box<dyn FnMut(Vec<u8>) -> Result<()> + Send>,
    buffer: Vec<u8>,
    bytes: u64,
    sha: Sha256,
}

impl HashingSink {
    fn flush_chunk(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        (self.sink)(chunk)
    }
}

impl Write for HashingSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.sha.update(data);
        self.bytes += data.len() as u64;
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush_chunk().map_err(std::io::Error::other)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Chunks go out when full and at the end; the writer's own flushes need not cut one.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::schema::Normalizer;
    use crate::export::timestamp::TimestampFormat;
    use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn events(n: usize) -> Vec<ExportEvent> {
        let normalizer = Normalizer::new("187520", TimestampFormat::Amplitude);
        (0..n)
            .map(|i| {
                let line = format!(
                    r#"{{"event_type":"play \"{i}\"","device_id":"d{}","$insert_id":"i{i}","amplitude_id":{},"server_received_time":"2020-01-25 17:00:{:02}.123456","client_event_time":"2020-01-25 17:00:{:02}.5","event_properties":{{"n":{i},"k":"v"}},"paying":{},"location_lat":{}.25,"$schema":"12","sample_rate":{}}}"#,
                    i % 13,
                    9_000_000_000i64 + i as i64,
                    i % 60,
                    i % 60,
                    if i.is_multiple_of(3) { "null" } else if i.is_multiple_of(2) { "true" } else { "false" },
                    i % 90,
                    if i.is_multiple_of(2) { "null" } else { "0.5" },
                );
                let mut event = ExportEvent::default();
                normalizer.normalize(line.as_bytes(), &mut event).unwrap();
                event.line.push(b'\n');
                event
            })
            .collect()
    }

    fn encode(events: &[ExportEvent], threads: usize, limits: RowGroupLimits) -> (Vec<u8>, PartStats) {
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink_out = out.clone();
        let mut encoder = ParquetPartEncoder::with_limits(
            CompressionPool::new(threads).unwrap(),
            move |chunk: Vec<u8>| {
                sink_out.lock().unwrap().extend_from_slice(&chunk);
                Ok(())
            },
            limits,
        )
        .unwrap();
        for e in events {
            encoder.write(e).unwrap();
        }
        let stats = encoder.finish(events.len() as u64).unwrap();
        let bytes = std::mem::take(&mut *out.lock().unwrap());
        (bytes, stats)
    }

    #[test]
    fn parts_read_back_typed_and_are_independent_of_threads() {
        let input = events(2 * BATCH_ROWS + 77);
        let limits = RowGroupLimits { rows: 5000, json_bytes: u64::MAX, memory_bytes: usize::MAX };
        let (one, stats) = encode(&input, 1, limits);
        let (four, _) = encode(&input, 4, limits);
        assert!(one == four, "thread count changed the bytes");
        assert_eq!(stats.compressed_bytes, one.len() as u64);
        assert_eq!(stats.sha256, hex::encode(Sha256::digest(&one)));

        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(one)).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), input.len().div_ceil(5000), "row groups close at the row limit");
        assert!(matches!(reader.metadata().row_group(0).column(0).compression(), Compression::ZSTD(_)));
        assert_eq!(reader.schema(), &arrow_schema(), "the footer carries the documented Arrow schema");
        let mut row = 0usize;
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let col = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
            let times = col("server_received_time");
            let times = times.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
            let ids = col("amplitude_id");
            let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
            let schema_col = col("$schema");
            let schema_col = schema_col.as_any().downcast_ref::<Int64Array>().unwrap();
            let paying = col("paying");
            let paying = paying.as_any().downcast_ref::<BooleanArray>().unwrap();
            let lat = col("location_lat");
            let lat = lat.as_any().downcast_ref::<Float64Array>().unwrap();
            let names = col("event_type");
            let names = names.as_any().downcast_ref::<StringArray>().unwrap();
            let props = col("event_properties");
            let props = props.as_any().downcast_ref::<StringArray>().unwrap();
            let rate = col("sample_rate");
            let rate = rate.as_any().downcast_ref::<StringArray>().unwrap();
            let user_id = col("user_id");
            for r in 0..batch.num_rows() {
                let i = row + r;
                let expected_time = chrono::NaiveDate::from_ymd_opt(2020, 1, 25).unwrap().and_hms_micro_opt(17, 0, (i % 60) as u32, 123_456).unwrap().and_utc();
                assert_eq!(times.value(r), expected_time.timestamp_micros(), "row {i}");
                assert_eq!(ids.value(r), 9_000_000_000 + i as i64);
                assert_eq!(schema_col.value(r), 12);
                assert_eq!(paying.is_null(r), i.is_multiple_of(3));
                if !i.is_multiple_of(3) {
                    assert_eq!(paying.value(r), i.is_multiple_of(2));
                }
                assert_eq!(lat.value(r), (i % 90) as f64 + 0.25);
                assert_eq!(names.value(r), format!("play \"{i}\""), "escapes are decoded");
                assert_eq!(serde_json::from_str::<serde_json::Value>(props.value(r)).unwrap(), serde_json::json!({"n": i, "k": "v"}));
                assert_eq!(rate.is_null(r), i.is_multiple_of(2));
                assert!(user_id.is_null(r));
            }
            row += batch.num_rows();
        }
        assert_eq!(row, input.len());
        let field = arrow_schema().field_with_name("event_time").unwrap().clone();
        assert_eq!(field.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
    }

    #[test]
    fn a_row_group_closes_at_its_json_size_and_an_empty_part_is_a_valid_file() {
        let input = events(1000);
        let per_event = input[0].line.len() as u64;
        let (bytes, _) = encode(&input, 2, RowGroupLimits { rows: usize::MAX, json_bytes: 300 * per_event, memory_bytes: usize::MAX });
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        assert!((3..=5).contains(&reader.metadata().num_row_groups()), "{} row groups", reader.metadata().num_row_groups());
        let (empty, stats) = encode(&[], 1, RowGroupLimits { rows: 10, json_bytes: 10, memory_bytes: 10 });
        assert_eq!(stats.events, 0);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(empty)).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    }

    #[test]
    fn a_row_group_closes_at_its_writers_memory_the_same_way_at_any_thread_count_and_ids_have_no_dictionary() {
        let input = events(3 * BATCH_ROWS);
        let limits = RowGroupLimits { rows: usize::MAX, json_bytes: u64::MAX, memory_bytes: 64 << 10 };
        let (one, _) = encode(&input, 1, limits);
        let (two, _) = encode(&input, 2, limits);
        assert!(one == two, "thread count changed the bytes");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(one)).unwrap();
        let meta = reader.metadata();
        assert!(meta.num_row_groups() >= 2, "{} row groups under a 64 KiB memory bound", meta.num_row_groups());
        assert_eq!(meta.file_metadata().num_rows() as usize, input.len());
        let (unbounded, _) = encode(&input, 1, RowGroupLimits { rows: usize::MAX, json_bytes: u64::MAX, memory_bytes: usize::MAX });
        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(unbounded)).unwrap().metadata().clone();
        assert_eq!(meta.num_row_groups(), 1);
        let group = meta.row_group(0);
        let has_dictionary = |name: &str| group.column(EXPORT_FIELDS.iter().position(|f| *f == name).unwrap()).dictionary_page_offset().is_some();
        for name in no_dictionary_columns() {
            assert!(!has_dictionary(name), "{name} has a dictionary");
        }
        assert!(has_dictionary("event_type") && has_dictionary("platform"), "other strings keep theirs");
    }
}
