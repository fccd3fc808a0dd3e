#!/usr/bin/env bash
# The README's first command, exactly as a user runs it (into a scratch folder): the demo
# checks its own output and exits non-zero if anything is off. Then DuckDB reads what it
# wrote with no options, as an analyst would.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/tests/scripts/env.sh"
cd "$repo"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo run --locked -q -p exportctl -- demo "$out/export-demo" | tee "$out/demo.log" | tail -n 25
grep -q "checks passed" "$out/demo.log"
"$EMULATOR_VENV/bin/python3" "$repo/tests/scripts/read-demo-with-duckdb.py" "$out/export-demo"
# `exportctl metrics` through the Prometheus client's own parser, checked against the ledger.
"$EMULATOR_VENV/bin/python3" "$repo/tests/scripts/metrics-with-prometheus-client.py" "$out/export-demo/home" --exportctl "$CARGO_TARGET_DIR/debug/exportctl"
# Then every connection's `exportctl ddl --engine duckdb`, run as printed: typed tables with
# exactly the events (and merged IDs) the complete markers count; hive connections by dt/hour.
"$EMULATOR_VENV/bin/python3" "$repo/tests/scripts/ddl-with-duckdb.py" "$out/export-demo/home" --exportctl "$CARGO_TARGET_DIR/debug/exportctl"
# The Delta connection's table through Delta Lake's own reader: rows per hour as the markers count.
"$EMULATOR_VENV/bin/python3" "$repo/tests/scripts/read-demo-delta-with-deltalake.py" "$out/export-demo"
