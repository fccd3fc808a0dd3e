#!/usr/bin/env bash
# Every Rust test in the workspace, against the emulators started by tests/run.sh.
# The output is kept so run.sh can print the totals as its closing line.
set -euo pipefail
cargo test --workspace --locked --no-fail-fast -- --test-threads 4 2>&1 | tee "$EMULATOR_RUN/cargo-test.log"
