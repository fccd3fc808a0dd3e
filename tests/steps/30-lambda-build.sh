#!/usr/bin/env bash
# Builds both Lambda functions for provided.al2023 (x86_64, release) with cargo-lambda,
# which cross-links with the zig it brings. The target folder lives in the cache so a
# second run on the same machine is incremental.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/tests/scripts/env.sh"
cd "$repo"
target="$EXPORT_CACHE_DIR/lambda-target"
# (cargo-lambda 1.9 passes --target-dir on to `cargo metadata`, which refuses it: use the env.)
CARGO_TARGET_DIR="$target" cargo lambda build --release --x86-64 -p hourly-export -p backfill
for f in hourly-export backfill; do
  bin="$target/lambda/$f/bootstrap"
  [ -x "$bin" ] || { echo "FATAL: $bin was not built" >&2; exit 1; }
  python3 -c 'import sys; h = open(sys.argv[1], "rb").read(20); sys.exit(0 if h[:4] == b"\x7fELF" and h[18] == 62 else 1)' "$bin" || { echo "FATAL: $bin is not an x86-64 ELF binary" >&2; exit 1; }
  echo "built $bin ($(du -h "$bin" | cut -f1))"
done
