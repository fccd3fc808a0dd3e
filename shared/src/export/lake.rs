//! The event lake: one hour's raw files, read in key order, line by line, without ever
//! holding a whole file. Broken lines and broken files are reported, never fatal.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::{ExportError, Result};
use crate::ports::{ObjectMeta, ObjectStore};

/// Lines longer than this are invalid records (a guard against a file with no newlines).
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// A lake line that could not be exported, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidRecord {
    pub file: String,
    /// 1-based line number within the (decompressed) file.
    pub line: u64,
    pub reason: String,
}

/// The lake files of one hour folder, in key order (`.json` and `.json.gz`).
pub async fn list_hour_files(lake: &dyn ObjectStore, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let mut files = lake.list(prefix).await?;
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(files)
}

/// What the reader hands to the consumer.
pub enum LakeItem<'a> {
    Line {
        file: &'a str,
        line: u64,
        bytes: &'a [u8],
    },
    /// A file (or its tail) could not be read: truncated or corrupt gzip, an oversized line.
    Broken(InvalidRecord),
}

/// Reads every file in order on the calling (blocking) thread, calling `visit` for each
/// non-blank line. Storage failures (permissions, network) abort with the storage error;
/// damaged content is reported through `visit` as `Broken` and reading goes on.
pub fn read_files_blocking(
    lake: &Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
    handle: &Handle,
    mut visit: impl FnMut(LakeItem<'_>) -> Result<()>,
) -> Result<()> {
    let mut line = Vec::with_capacity(64 * 1024);
    for file in files {
        // The lake is ours: a refused or missing lake object is never the destination's fault.
        let stream = handle.block_on(lake.get_stream(&file.key)).map_err(|e| e.ours("event lake"))?;
        let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream.map_err(std::io::Error::other)), handle.clone());
        let reader = BufReader::with_capacity(256 * 1024, reader);
        let source: Box<dyn Read> = if file.key.ends_with(".gz") { Box::new(flate2::bufread::MultiGzDecoder::new(reader)) } else { Box::new(reader) };
        let mut source = BufReader::with_capacity(256 * 1024, source);
        let mut line_no = 0u64;
        loop {
            line.clear();
            match read_line_bounded(&mut source, &mut line) {
                Ok(LineRead::Eof) => break,
                Ok(LineRead::Line) => {
                    line_no += 1;
                    let mut bytes = &line[..];
                    if bytes.last() == Some(&b'\r') {
                        bytes = &bytes[..bytes.len() - 1];
                    }
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    visit(LakeItem::Line { file: &file.key, line: line_no, bytes })?;
                }
                Ok(LineRead::TooLong) => {
                    line_no += 1;
                    visit(LakeItem::Broken(InvalidRecord {
                        file: file.key.clone(),
                        line: line_no,
                        reason: format!("line longer than {MAX_LINE_BYTES} bytes; skipped"),
                    }))?;
                }
                Err(e) => {
                    // A storage error travels inside the io::Error: surface it as itself.
                    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ExportError>()) {
                        return Err(inner.duplicate().ours("event lake"));
                    }
                    visit(LakeItem::Broken(InvalidRecord {
                        file: file.key.clone(),
                        line: line_no + 1,
                        reason: format!("file unreadable after line {line_no} ({e}); the rest of the file is skipped"),
                    }))?;
                    break;
                }
            }
        }
    }
    Ok(())
}

enum LineRead {
    Line,
    TooLong,
    Eof,
}

fn read_line_bounded(r: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<LineRead> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(if !any {
                LineRead::Eof
            } else if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
        any = true;
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            return Ok(if too_long { LineRead::TooLong } else { LineRead::Line });
        }
    }
}
