//! Part encoding: NDJSON lines → gzip, streamed, with deterministic roll-over and
//! compression spread over a thread pool.
//!
//! Parallel and deterministic at once, the way pigz does it: the uncompressed stream of a
//! part is cut into fixed-size blocks; each block is deflated on its own, primed with the
//! last 32 KiB of the block before it as dictionary, and ended with a sync flush (the last
//! block with a final one). The blocks' outputs concatenate into one ordinary deflate
//! stream, so every part is a single-member gzip file any reader understands, and the bytes
//! depend only on the input and the block size, never on the number of threads.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Arc;

use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest, Sha256};

use crate::error::{ExportError, Result};

/// Uncompressed bytes per independently compressed block.
pub const BLOCK_SIZE: usize = 1 << 20;
/// Deflate's window: the dictionary carried from one block to the next.
const WINDOW: usize = 32 * 1024;

/// Gzip header with no name, mtime 0 and OS "unknown", so output never depends on the host.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A shared pool of compression threads.
#[derive(Clone)]
pub struct CompressionPool {
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
}

impl std::fmt::Debug for CompressionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompressionPool({} threads)", self.threads)
    }
}

impl CompressionPool {
    /// `threads = 0` means one per core.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gzip-{i}"))
            .build()
            .map_err(|e| ExportError::Internal(format!("cannot start compression threads: {e}")))?;
        Ok(CompressionPool { pool: Arc::new(pool), threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `op` inside the pool, so its parallel iterators use the pool's threads.
    pub fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        self.pool.install(op)
    }
}

/// Counts and checksum of one finished part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartStats {
    pub events: u64,
    pub uncompressed_bytes: u64,
    pub compressed_bytes: u64,
    pub sha256: String,
}

/// A block's deflate output and its input buffer (returned for reuse), or the error.
type Deflated = std::result::Result<(Vec<u8>, Vec<u8>), String>;

/// Streams one gzip member: `write` lines in, compressed chunks out to `sink` in order.
pub struct GzipPartEncoder<S: FnMut(Vec<u8>) -> Result<()>> {
    pool: CompressionPool,
    level: u32,
    block: Vec<u8>,
    dictionary: Vec<u8>,
    crc: crc32fast::Hasher,
    uncompressed: u64,
    compressed: u64,
    sha: Sha256,
    /// Compressed blocks in order, each with its input buffer to be reused.
    pending: VecDeque<mpsc::Receiver<Deflated>>,
    /// Input buffers back from the pool: a part reuses the same few megabytes instead of
    /// allocating (and fragmenting the heap with) a new one for every block.
    spare: Vec<Vec<u8>>,
    sink: S,
    started: bool,
}

impl<S: FnMut(Vec<u8>) -> Result<()>> GzipPartEncoder<S> {
    pub fn new(pool: CompressionPool, level: u32, sink: S) -> Self {
        GzipPartEncoder {
            pool,
            level: level.min(9),
            block: Vec::with_capacity(BLOCK_SIZE),
            dictionary: Vec::new(),
            crc: crc32fast::Hasher::new(),
            uncompressed: 0,
            compressed: 0,
            sha: Sha256::new(),
            pending: VecDeque::new(),
            spare: Vec::new(),
            sink,
            started: false,
        }
    }

    pub fn uncompressed_len(&self) -> u64 {
        self.uncompressed
    }

    fn emit(&mut self, bytes: Vec<u8>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.compressed += bytes.len() as u64;
        self.sha.update(&bytes);
        (self.sink)(bytes)
    }

    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        if !self.started {
            self.started = true;
            self.emit(GZIP_HEADER.to_vec())?;
        }
        self.crc.update(data);
        self.uncompressed += data.len() as u64;
        while !data.is_empty() {
            let room = BLOCK_SIZE - self.block.len();
            let take = room.min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK_SIZE {
                self.submit(false)?;
            }
        }
        Ok(())
    }

    /// Hands the current block to the pool; keeps at most 2 blocks per thread in flight so
    /// memory stays bounded whatever the input size.
    fn submit(&mut self, last: bool) -> Result<()> {
        let next = if last { Vec::new() } else { self.spare.pop().unwrap_or_else(|| Vec::with_capacity(BLOCK_SIZE)) };
        let block = std::mem::replace(&mut self.block, next);
        let dictionary = std::mem::take(&mut self.dictionary);
        if !last {
            self.dictionary = block[block.len().saturating_sub(WINDOW)..].to_vec();
        }
        let level = self.level;
        let (tx, rx) = mpsc::sync_channel(1);
        self.pool.pool.spawn(move || {
            let _ = tx.send(deflate_block(&block, &dictionary, level, last).map(|out| (out, block)));
        });
        self.pending.push_back(rx);
        while self.pending.len() > 2 * self.pool.threads {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let (out, mut block) = rx
                .recv()
                .map_err(|_| ExportError::Internal("compression thread vanished".into()))?
                .map_err(|e| ExportError::Internal(format!("deflate failed: {e}")))?;
            if block.capacity() >= BLOCK_SIZE {
                block.clear();
                self.spare.push(block);
            }
            self.emit(out)?;
        }
        Ok(())
    }

    /// Ends the member (final block + trailer) and returns its stats.
    pub fn finish(mut self, events: u64) -> Result<PartStats> {
        if !self.started {
            self.started = true;
            self.emit(GZIP_HEADER.to_vec())?;
        }
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.drain_one()?;
        }
        let mut trailer = Vec::with_capacity(8);
        trailer.extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        trailer.extend_from_slice(&(self.uncompressed as u32).to_le_bytes());
        self.emit(trailer)?;
        Ok(PartStats { events, uncompressed_bytes: self.uncompressed, compressed_bytes: self.compressed, sha256: hex::encode(self.sha.clone().finalize()) })
    }
}

fn deflate_block(input: &[u8], dictionary: &[u8], level: u32, last: bool) -> std::result::Result<Vec<u8>, String> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(|e| e.to_string())?;
    }
    let mut out = Vec::with_capacity(input.len() / 4 + 1024);
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c.compress_vec(&input[consumed..], &mut out, flush).map_err(|e| e.to_string())?;
        let done_input = c.total_in() as usize == input.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and there was room left over.
            Status::Ok | Status::BufError if !last && done_input && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn encode(data: &[u8], threads: usize, level: u32) -> Vec<u8> {
        let pool = CompressionPool::new(threads).unwrap();
        let mut out = Vec::new();
        let mut enc = GzipPartEncoder::new(pool, level, |b| {
            out.extend_from_slice(&b);
            Ok(())
        });
        for chunk in data.chunks(7777) {
            enc.write(chunk).unwrap();
        }
        let stats = enc.finish(0).unwrap();
        assert_eq!(stats.uncompressed_bytes, data.len() as u64);
        assert_eq!(stats.compressed_bytes, out.len() as u64);
        out
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(format!("{{\"event\":{i},\"name\":\"item-{}\",\"v\":{}}}\n", i % 97, i * 7919 % 1000).as_bytes());
            i += 1;
        }
        v
    }

    #[test]
    fn output_is_plain_gzip_and_independent_of_threads() {
        for size in [0, 10, BLOCK_SIZE - 1, BLOCK_SIZE, 3 * BLOCK_SIZE + 12345] {
            let data = sample(size);
            let one = encode(&data, 1, 6);
            let four = encode(&data, 4, 6);
            assert_eq!(one, four, "thread count changed the bytes at size {size}");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
            assert!(back == data, "round trip at size {size}");
        }
    }
}
