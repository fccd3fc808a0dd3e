//! Checkpoints: the whole snapshot at a version as one Parquet file,
//! `_delta_log/{version:020}.checkpoint.parquet`, written every
//! [`CHECKPOINT_INTERVAL`](crate::export::delta::commit::CHECKPOINT_INTERVAL) commits, and
//! `_delta_log/_last_checkpoint` pointing at it. Readers (and our own next commit) start
//! there instead of replaying every entry, and log retention may then drop the entries
//! before it.
//!
//! The schema is the protocol's ("Checkpoint Schema", classic V1 spec): one row per action,
//! columns `protocol`, `metaData`, `txn`, `add`, `remove` as structs, exactly one of them
//! set per row; `add.partitionValues`, `add.tags` and `metaData.configuration` are
//! `map<string,string>` (Parquet's `key_value`/`key`/`value` names), `partitionColumns` a
//! `list<string>`. Tombstones keep `partitionValues` and `size` (extendedFileMetadata).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, MapBuilder, MapFieldNames, NullBufferBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Int32Array, Int64Array, MapArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::json;

use crate::error::{ExportError, Result};
use crate::export::delta::actions::{checkpoint_file, Add, Format, Metadata, Protocol, Remove};
use crate::export::delta::log::{DeltaTable, TableState};

type Values = BTreeMap<String, Option<String>>;

/// Writes the checkpoint of `state` (at its version) and then `_last_checkpoint`.
pub async fn write(table: &DeltaTable, state: &TableState) -> Result<()> {
    let Some(version) = state.version else { return Ok(()) };
    let (body, rows, adds) = encode(state).map_err(|e| ExportError::Internal(format!("encoding the Delta checkpoint of version {version}: {e}")))?;
    let size_in_bytes = body.len();
    table.store.put(&table.log_key(&checkpoint_file(version)), Bytes::from(body)).await?;
    let last = json!({"version": version, "size": rows, "sizeInBytes": size_in_bytes, "numOfAddFiles": adds});
    table.store.put(&table.log_key("_last_checkpoint"), Bytes::from(last.to_string())).await
}

/// The checkpoint's bytes, its row count and how many rows are `add`s.
fn encode(state: &TableState) -> std::result::Result<(Vec<u8>, usize, usize), Box<dyn std::error::Error + Send + Sync>> {
    // Rows: protocol, metaData, every txn, every add, every tombstone.
    let mut kinds: Vec<Row<'_>> = Vec::new();
    if let Some(p) = &state.protocol {
        kinds.push(Row::Protocol(p));
    }
    if let Some(m) = &state.metadata {
        kinds.push(Row::Metadata(m));
    }
    kinds.extend(state.txns.iter().map(|(app, v)| Row::Txn(app, *v)));
    kinds.extend(state.files.values().map(Row::Add));
    kinds.extend(state.tombstones.values().map(Row::Remove));

    let protocol = {
        let ps: Vec<Option<&Protocol>> = kinds.iter().map(|r| if let Row::Protocol(p) = r { Some(*p) } else { None }).collect();
        strukt(
            vec![
                ("minReaderVersion", Arc::new(Int32Array::from(ps.iter().map(|p| p.map(|p| p.min_reader_version as i32)).collect::<Vec<_>>())) as ArrayRef),
                ("minWriterVersion", Arc::new(Int32Array::from(ps.iter().map(|p| p.map(|p| p.min_writer_version as i32)).collect::<Vec<_>>())) as ArrayRef),
            ],
            ps.iter().map(Option::is_some).collect(),
        )?
    };
    let metadata = {
        let ms: Vec<Option<&Metadata>> = kinds.iter().map(|r| if let Row::Metadata(m) = r { Some(*m) } else { None }).collect();
        let options: Vec<Option<Values>> = ms.iter().map(|m| m.map(|m| m.format.options.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect())).collect();
        let format = strukt(
            vec![("provider", strings(ms.iter().map(|m| m.map(|m| m.format.provider.as_str())))), ("options", map(options.iter().map(Option::as_ref))?)],
            ms.iter().map(Option::is_some).collect(),
        )?;
        let mut columns = ListBuilder::new(StringBuilder::new()).with_field(Field::new("element", DataType::Utf8, true));
        for m in &ms {
            match m {
                Some(m) => {
                    for c in &m.partition_columns {
                        columns.values().append_value(c);
                    }
                    columns.append(true);
                }
                None => columns.append(false),
            }
        }
        let configuration: Vec<Option<Values>> =
            ms.iter().map(|m| m.map(|m| m.configuration.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect())).collect();
        strukt(
            vec![
                ("id", strings(ms.iter().map(|m| m.map(|m| m.id.as_str())))),
                ("name", strings(ms.iter().map(|m| m.and_then(|m| m.name.as_deref())))),
                ("description", strings(ms.iter().map(|_| None))),
                ("format", format),
                ("schemaString", strings(ms.iter().map(|m| m.map(|m| m.schema_string.as_str())))),
                ("partitionColumns", Arc::new(columns.finish()) as ArrayRef),
                ("configuration", map(configuration.iter().map(Option::as_ref))?),
                ("createdTime", longs(ms.iter().map(|m| m.and_then(|m| m.created_time)))),
            ],
            ms.iter().map(Option::is_some).collect(),
        )?
    };
    let txn = {
        let ts: Vec<Option<(&String, i64)>> = kinds.iter().map(|r| if let Row::Txn(a, v) = r { Some((*a, *v)) } else { None }).collect();
        strukt(
            vec![
                ("appId", strings(ts.iter().map(|t| t.map(|(a, _)| a.as_str())))),
                ("version", longs(ts.iter().map(|t| t.map(|(_, v)| v)))),
                ("lastUpdated", longs(ts.iter().map(|_| None))),
            ],
            ts.iter().map(Option::is_some).collect(),
        )?
    };
    let add = {
        let adds: Vec<Option<&Add>> = kinds.iter().map(|r| if let Row::Add(a) = r { Some(*a) } else { None }).collect();
        strukt(
            vec![
                ("path", strings(adds.iter().map(|a| a.map(|a| a.path.as_str())))),
                ("partitionValues", map(adds.iter().map(|a| a.map(|a| &a.partition_values)))?),
                ("size", longs(adds.iter().map(|a| a.map(|a| a.size)))),
                ("modificationTime", longs(adds.iter().map(|a| a.map(|a| a.modification_time)))),
                ("dataChange", bools(adds.iter().map(|a| a.map(|a| a.data_change)))),
                ("stats", strings(adds.iter().map(|a| a.and_then(|a| a.stats.as_deref())))),
                ("tags", map(adds.iter().map(|a| a.and_then(|a| a.tags.as_ref())))?),
            ],
            adds.iter().map(Option::is_some).collect(),
        )?
    };
    let remove = {
        let rs: Vec<Option<&Remove>> = kinds.iter().map(|r| if let Row::Remove(x) = r { Some(*x) } else { None }).collect();
        strukt(
            vec![
                ("path", strings(rs.iter().map(|r| r.map(|r| r.path.as_str())))),
                ("deletionTimestamp", longs(rs.iter().map(|r| r.and_then(|r| r.deletion_timestamp)))),
                ("dataChange", bools(rs.iter().map(|r| r.map(|r| r.data_change)))),
                ("extendedFileMetadata", bools(rs.iter().map(|r| r.and_then(|r| r.extended_file_metadata)))),
                ("partitionValues", map(rs.iter().map(|r| r.and_then(|r| r.partition_values.as_ref())))?),
                ("size", longs(rs.iter().map(|r| r.and_then(|r| r.size)))),
            ],
            rs.iter().map(Option::is_some).collect(),
        )?
    };
    let columns = vec![("txn", txn), ("add", add), ("remove", remove), ("metaData", metadata), ("protocol", protocol)];
    let schema = Arc::new(Schema::new(columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>()));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect())?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    let adds = state.files.len();
    Ok((out, kinds.len(), adds))
}

enum Row<'a> {
    Protocol(&'a Protocol),
    Metadata(&'a Metadata),
    Txn(&'a String, i64),
    Add(&'a Add),
    Remove(&'a Remove),
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from(values.collect::<Vec<_>>()))
}

fn longs(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from(values.collect::<Vec<_>>()))
}

fn bools(values: impl Iterator<Item = Option<bool>>) -> ArrayRef {
    Arc::new(BooleanArray::from(values.collect::<Vec<_>>()))
}

fn map<'a>(rows: impl Iterator<Item = Option<&'a Values>>) -> std::result::Result<ArrayRef, arrow_schema::ArrowError> {
    let names = MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() };
    let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for row in rows {
        match row {
            Some(m) => {
                for (k, v) in m {
                    b.keys().append_value(k);
                    b.values().append_option(v.as_deref());
                }
                b.append(true)?;
            }
            None => b.append(false)?,
        }
    }
    Ok(Arc::new(b.finish()))
}

fn strukt(children: Vec<(&str, ArrayRef)>, valid: Vec<bool>) -> std::result::Result<ArrayRef, arrow_schema::ArrowError> {
    let fields: Fields = children.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>().into();
    let arrays = children.into_iter().map(|(_, a)| a).collect();
    let mut nulls = NullBufferBuilder::new(valid.len());
    nulls.append_slice(&valid);
    Ok(Arc::new(StructArray::try_new(fields, arrays, nulls.finish())?))
}

/// Reads the checkpoint at `version` into a snapshot.
pub async fn read(table: &DeltaTable, version: u64) -> Result<TableState> {
    let key = table.log_key(&checkpoint_file(version));
    let body = table.store.get(&key).await?;
    let corrupt = |e: &dyn std::fmt::Display| ExportError::Corrupt { what: key.clone(), detail: format!("not a readable Delta checkpoint: {e}") };
    let reader = ParquetRecordBatchReaderBuilder::try_new(body).and_then(|b| b.build()).map_err(|e| corrupt(&e))?;
    let mut state = TableState { version: Some(version), ..TableState::default() };
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e))?;
        decode(&batch, &mut state).ok_or_else(|| corrupt(&"a column is missing or of another type"))?;
    }
    Ok(state)
}

fn decode(batch: &RecordBatch, state: &mut TableState) -> Option<()> {
    let col = |s: &StructArray, name: &str| s.column_by_name(name).cloned();
    let text =
        |s: &StructArray, name: &str, i: usize| col(s, name).and_then(|c| c.as_string_opt::<i32>().filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string()));
    let long =
        |s: &StructArray, name: &str, i: usize| col(s, name).and_then(|c| c.as_primitive_opt::<Int64Type>().filter(|a| a.is_valid(i)).map(|a| a.value(i)));
    let boolean = |s: &StructArray, name: &str, i: usize| col(s, name).and_then(|c| c.as_boolean_opt().filter(|a| a.is_valid(i)).map(|a| a.value(i)));
    let values = |s: &StructArray, name: &str, i: usize| col(s, name).and_then(|c| c.as_map_opt().filter(|a| a.is_valid(i)).map(|m| map_row(m, i)));
    let part = |name: &str| batch.column_by_name(name).and_then(|c| c.as_struct_opt().cloned());
    let (protocol, metadata, txn, add, remove) = (part("protocol"), part("metaData"), part("txn"), part("add"), part("remove"));
    for i in 0..batch.num_rows() {
        if let Some(p) = protocol.as_ref().filter(|p| p.is_valid(i)) {
            let int = |name: &str| col(p, name).and_then(|c| c.as_primitive_opt::<Int32Type>().map(|a| a.value(i)));
            state.protocol = Some(Protocol { min_reader_version: int("minReaderVersion")? as u32, min_writer_version: int("minWriterVersion")? as u32 });
        }
        if let Some(m) = metadata.as_ref().filter(|m| m.is_valid(i)) {
            let format = col(m, "format")?;
            let format = format.as_struct_opt()?;
            let columns = col(m, "partitionColumns")?;
            let columns = columns.as_list_opt::<i32>()?.value(i);
            let columns = columns.as_string_opt::<i32>()?;
            state.metadata = Some(Metadata {
                id: text(m, "id", i)?,
                name: text(m, "name", i),
                format: Format {
                    provider: text(format, "provider", i)?,
                    options: values(format, "options", i).unwrap_or_default().into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
                },
                schema_string: text(m, "schemaString", i)?,
                partition_columns: columns.iter().flatten().map(str::to_string).collect(),
                configuration: values(m, "configuration", i).unwrap_or_default().into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
                created_time: long(m, "createdTime", i),
            });
        }
        if let Some(t) = txn.as_ref().filter(|t| t.is_valid(i)) {
            state.txns.insert(text(t, "appId", i)?, long(t, "version", i)?);
        }
        if let Some(a) = add.as_ref().filter(|a| a.is_valid(i)) {
            let path = text(a, "path", i)?;
            state.files.insert(
                path.clone(),
                Add {
                    path,
                    partition_values: values(a, "partitionValues", i)?,
                    size: long(a, "size", i)?,
                    modification_time: long(a, "modificationTime", i)?,
                    data_change: boolean(a, "dataChange", i)?,
                    stats: text(a, "stats", i),
                    tags: values(a, "tags", i),
                },
            );
        }
        if let Some(r) = remove.as_ref().filter(|r| r.is_valid(i)) {
            let path = text(r, "path", i)?;
            state.tombstones.insert(
                path.clone(),
                Remove {
                    path,
                    deletion_timestamp: long(r, "deletionTimestamp", i),
                    data_change: boolean(r, "dataChange", i)?,
                    extended_file_metadata: boolean(r, "extendedFileMetadata", i),
                    partition_values: values(r, "partitionValues", i),
                    size: long(r, "size", i),
                },
            );
        }
    }
    Some(())
}

fn map_row(m: &MapArray, i: usize) -> Values {
    let entries = m.value(i);
    let (keys, values) = (entries.column(0).as_string::<i32>(), entries.column(1).as_string::<i32>());
    (0..entries.len()).map(|j| (keys.value(j).to_string(), values.is_valid(j).then(|| values.value(j).to_string()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory::MemoryStore;
    use crate::export::delta::actions::{partition_values, schema_string, TableData};
    use crate::hour::UtcHour;

    #[tokio::test]
    async fn a_checkpoint_reads_back_as_the_snapshot_it_was_written_from() {
        let table = DeltaTable::new(Arc::new(MemoryStore::new("dest")), "exports/187520");
        let hour = UtcHour::parse("2020-01-25T04").unwrap();
        let mut state = TableState { version: Some(10), ..TableState::default() };
        state.protocol = Some(Protocol { min_reader_version: 1, min_writer_version: 2 });
        state.metadata = Some(Metadata {
            id: "id".into(),
            name: None,
            format: Format { provider: "parquet".into(), options: BTreeMap::new() },
            schema_string: schema_string(TableData::Events),
            partition_columns: vec!["dt".into(), "hour".into()],
            configuration: BTreeMap::from([("delta.checkpointInterval".into(), "10".into())]),
            created_time: Some(5),
        });
        state.txns.insert("event-export/c1/events/2020-01-25T04".into(), 7);
        let add = Add {
            path: "a%230.parquet".into(),
            partition_values: partition_values(hour),
            size: 10,
            modification_time: 3,
            data_change: true,
            stats: Some("{\"numRecords\":4}".into()),
            tags: Some(BTreeMap::from([("sha256".into(), Some("ab".into()))])),
        };
        state.files.insert(add.path.clone(), add);
        let gone = Remove {
            path: "a%231.parquet".into(),
            deletion_timestamp: Some(9),
            data_change: true,
            extended_file_metadata: Some(true),
            partition_values: Some(partition_values(hour)),
            size: Some(11),
        };
        state.tombstones.insert(gone.path.clone(), gone);
        write(&table, &state).await.unwrap();
        let back = read(&table, 10).await.unwrap();
        assert_eq!(back.protocol, state.protocol);
        assert_eq!(back.metadata, state.metadata);
        assert_eq!(back.txns, state.txns);
        assert_eq!(back.files, state.files);
        assert_eq!(back.tombstones, state.tombstones);
        let last: serde_json::Value = serde_json::from_slice(&table.store.get(&table.log_key("_last_checkpoint")).await.unwrap()).unwrap();
        assert_eq!(last["version"], 10);
        assert_eq!(last["size"], 5);
    }
}
