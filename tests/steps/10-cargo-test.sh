#!/usr/bin/env bash
# Every Rust test in the workspace, against the emulators started by tests/run.sh.
set -euo pipefail
cargo test --workspace --locked --no-fail-fast -- --test-threads 4
