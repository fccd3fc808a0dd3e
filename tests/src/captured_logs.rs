//! Every log line a test binary writes, at every level, kept so a test can show that no
//! secret reached them.

use std::sync::{Arc, Mutex, OnceLock};

/// What the global TRACE subscriber of this test binary has written so far.
#[derive(Clone)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Installs, once per test binary, a global subscriber at TRACE writing here. Global:
    /// a thread-scoped subscriber misses lines when other tests of the same process cache
    /// the callsites' interest first.
    pub fn install() -> CapturedLogs {
        static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = CapturedLogs(Arc::new(Mutex::new(Vec::new())));
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_ansi(false).with_writer(move || writer.clone()).finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber per test binary");
            logs
        })
        .clone()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
