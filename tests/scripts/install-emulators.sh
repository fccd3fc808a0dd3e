#!/usr/bin/env bash
# Installs moto, cfn-lint, cargo-lambda (PyPI) and Azurite (npm) into the cache folder.
# Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
mkdir -p "$EXPORT_CACHE_DIR"

stamp="$EXPORT_CACHE_DIR/installed-$MOTO_VERSION-$CFN_LINT_VERSION-$CARGO_LAMBDA_VERSION-$AZURITE_VERSION"
if [ -f "$stamp" ] && [ -x "$EMULATOR_VENV/bin/moto_server" ] && [ -x "$EMULATOR_NODE/node_modules/.bin/azurite-blob" ]; then
  echo "emulators already installed in $EXPORT_CACHE_DIR"
  exit 0
fi

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
