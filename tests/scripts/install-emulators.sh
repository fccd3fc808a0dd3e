#!/usr/bin/env bash
# Installs moto, cfn-lint, cargo-lambda, DuckDB, deltalake (PyPI) and Azurite (npm) into the cache folder, and
# checkov (PyPI) into a venv of its own there (its pinned dependencies conflict with moto's).
# Idempotent: each part does nothing when its pinned versions are already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
mkdir -p "$EXPORT_CACHE_DIR"

stamp="$EXPORT_CACHE_DIR/installed-$MOTO_VERSION-$CFN_LINT_VERSION-$CARGO_LAMBDA_VERSION-$AZURITE_VERSION"
if [ -f "$stamp" ] && [ -x "$EMULATOR_VENV/bin/moto_server" ] && [ -x "$EMULATOR_NODE/node_modules/.bin/azurite-blob" ]; then
  echo "emulators already installed in $EXPORT_CACHE_DIR"
else
  echo "installing emulators into $EXPORT_CACHE_DIR"
  python3 -m venv "$EMULATOR_VENV"
  "$EMULATOR_VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$EMULATOR_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION" \
    "boto3" "cryptography"
  mkdir -p "$EMULATOR_NODE"
  (cd "$EMULATOR_NODE" && { [ -f package.json ] || echo '{"private":true}' > package.json; } \
    && npm install --silent --no-audit --no-fund "azurite@$AZURITE_VERSION")
  touch "$stamp"
  echo "emulators installed"
fi

# DuckDB reads the demo's output as an analyst would (tests/steps/15-demo.sh).
duckdb_stamp="$EMULATOR_VENV/installed-duckdb-$DUCKDB_VERSION"
if [ -f "$duckdb_stamp" ]; then
  echo "duckdb $DUCKDB_VERSION already installed in $EMULATOR_VENV"
else
  "$EMULATOR_VENV/bin/pip" install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION"
  rm -f "$EMULATOR_VENV"/installed-duckdb-*
  touch "$duckdb_stamp"
  echo "duckdb $DUCKDB_VERSION installed"
fi

# The Prometheus client's own text parser reads `exportctl metrics` (tests/steps/15-demo.sh).
prometheus_stamp="$EMULATOR_VENV/installed-prometheus-client-$PROMETHEUS_CLIENT_VERSION"
if [ -f "$prometheus_stamp" ]; then
  echo "prometheus_client $PROMETHEUS_CLIENT_VERSION already installed in $EMULATOR_VENV"
else
  "$EMULATOR_VENV/bin/pip" install --quiet --disable-pip-version-check "prometheus_client==$PROMETHEUS_CLIENT_VERSION"
  rm -f "$EMULATOR_VENV"/installed-prometheus-client-*
  touch "$prometheus_stamp"
  echo "prometheus_client $PROMETHEUS_CLIENT_VERSION installed"
fi

# Delta Lake's own Python reader (delta-rs) reads the tables of "table": "delta" connections,
# with pyarrow to compare their rows (shared/tests/delta_table.rs, tests/tests/delta_reader.rs).
deltalake_stamp="$EMULATOR_VENV/installed-deltalake-$DELTALAKE_VERSION-$PYARROW_VERSION"
if [ -f "$deltalake_stamp" ]; then
  echo "deltalake $DELTALAKE_VERSION already installed in $EMULATOR_VENV"
else
  "$EMULATOR_VENV/bin/pip" install --quiet --disable-pip-version-check "deltalake==$DELTALAKE_VERSION" "pyarrow==$PYARROW_VERSION"
  rm -f "$EMULATOR_VENV"/installed-deltalake-*
  touch "$deltalake_stamp"
  echo "deltalake $DELTALAKE_VERSION installed"
fi

checkov_stamp="$CHECKOV_VENV/installed-checkov-$CHECKOV_VERSION"
if [ -f "$checkov_stamp" ] && [ -x "$CHECKOV" ]; then
  echo "checkov $CHECKOV_VERSION already installed in $CHECKOV_VENV"
else
  echo "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  rm -f "$CHECKOV_VENV"/installed-checkov-*
  touch "$checkov_stamp"
  echo "checkov installed"
fi
