# Shared settings for the test scripts: where the caches live (outside the clone, so a
# second run on the same machine is warm) and the pinned emulator versions.
export EXPORT_CACHE_DIR="${EXPORT_CACHE_DIR:-$HOME/.cache/event-export}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$EXPORT_CACHE_DIR/target}"
export EMULATOR_VENV="$EXPORT_CACHE_DIR/venv"
export EMULATOR_NODE="$EXPORT_CACHE_DIR/node"
# checkov has its own venv: its pinned dependencies conflict with moto's.
export CHECKOV_VENV="$EXPORT_CACHE_DIR/checkov-venv"
export EMULATOR_RUN="${EMULATOR_RUN:-$EXPORT_CACHE_DIR/run}"
MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"
CARGO_LAMBDA_VERSION="1.9.2"
AZURITE_VERSION="3.35.0"
CHECKOV_VERSION="3.2.459"
DUCKDB_VERSION="2.0.0"
PROMETHEUS_CLIENT_VERSION="0.23.1"
DELTALAKE_VERSION="1.6.6"
PYARROW_VERSION="26.0.1"
# The steps call checkov by this path (its venv is not put on PATH, so its python and pip
# never shadow the emulator venv's).
export CHECKOV="$CHECKOV_VENV/bin/checkov"
export PATH="$EMULATOR_VENV/bin:$EMULATOR_NODE/node_modules/.bin:$PATH"
