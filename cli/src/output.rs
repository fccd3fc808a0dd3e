//! Printing that never stops the work. Rust ignores SIGPIPE, so the standard `println!`
//! panics when stdout is a closed pipe (`exportctl tick | head`) and the connections after
//! the cut are never exported. Every print in this crate goes through here instead (the
//! macros below shadow the standard ones in every module declared after this one): the
//! first failed write closes that stream for the rest of the process, and the command goes
//! on with its work, its exit code telling what the work did.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Which stream a print goes to.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Writes `args` (and a line break) to `stream`, unless an earlier write to it failed; a
/// failure now stops printing to it from here on.
pub fn write(stream: Stream, args: std::fmt::Arguments<'_>, newline: bool) {
    let closed = match stream {
        Stream::Stdout => &STDOUT_CLOSED,
        Stream::Stderr => &STDERR_CLOSED,
    };
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let written = match stream {
        Stream::Stdout => write_to(&mut std::io::stdout().lock(), args, newline),
        Stream::Stderr => write_to(&mut std::io::stderr().lock(), args, newline),
    };
    if written.is_err() {
        closed.store(true, Ordering::Relaxed);
    }
}

fn write_to(out: &mut impl Write, args: std::fmt::Arguments<'_>, newline: bool) -> std::io::Result<()> {
    out.write_fmt(args)?;
    if newline {
        out.write_all(b"\n")?;
    }
    // Line buffering would otherwise hold back a failure until the next line or the exit.
    out.flush()
}

/// The log's writer (stderr) for tracing: a failed write closes stderr like a print does,
/// and is never an error to the logger (which would report it on stderr again).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write(Stream::Stderr, format_args!("{}", String::from_utf8_lossy(buf)), false);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The one document a `--json` command prints on stdout (pretty, then a line break). Our
/// report types always serialise; a failure would be a bug, not the user's input.
pub fn json(document: &impl serde::Serialize) {
    write(Stream::Stdout, format_args!("{}", serde_json::to_string_pretty(document).expect("a report serialises to JSON")), true);
}

#[allow(unused_macros)]
macro_rules! println {
    () => { $crate::output::write($crate::output::Stream::Stdout, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Stdout, format_args!($($arg)*), true) };
}

#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Stdout, format_args!($($arg)*), false) };
}

#[allow(unused_macros)]
macro_rules! eprintln {
    () => { $crate::output::write($crate::output::Stream::Stderr, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Stderr, format_args!($($arg)*), true) };
}

#[allow(unused_macros)]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Stderr, format_args!($($arg)*), false) };
}
