//! Where the emulators started by `tests/run.sh` listen. A missing variable is a loud
//! failure, never a skip: run the suite through `bash tests/run.sh`.

fn required(var: &str, what: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: {what} is not running. Run the tests with `bash tests/run.sh`, which starts the emulators."))
}

/// moto server without IAM enforcement (S3, KMS, SES, Scheduler, STS, IAM).
pub fn moto_url() -> String {
    required("MOTO_URL", "the moto server")
}

/// moto server with IAM enforcement on (INITIAL_NO_AUTH_ACTION_COUNT).
pub fn moto_auth_url() -> String {
    required("MOTO_AUTH_URL", "the moto server with IAM enforcement")
}

/// moto server answering one request at a time: for races of create-only writes, which the
/// threaded moto does not decide atomically (see `tests/scripts/moto_serial.py`).
pub fn moto_serial_url() -> String {
    required("MOTO_SERIAL_URL", "the single-threaded moto server")
}

/// Azurite blob endpoint over http, account devstoreaccount1.
pub fn azurite_url() -> String {
    required("AZURITE_URL", "Azurite")
}

/// A name unique to this test process and call, for buckets and containers.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{n}-{}", std::process::id(), nanos % 100_000)
}
