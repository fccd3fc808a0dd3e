#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts the emulators, runs every
# Rust test (unit, conformance on local/S3-on-moto/Azure-on-Azurite, end to end), lints the
# SAM template and builds the Lambda functions. Exits non-zero on any failure.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
source tests/scripts/env.sh

tests/scripts/install-emulators.sh
tests/scripts/start-emulators.sh
trap 'tests/scripts/stop-emulators.sh' EXIT
source "$EMULATOR_RUN/env"

for step in tests/steps/*.sh; do
  echo "=== $step"
  bash "$step"
done

# Closing line: the totals of every cargo test binary (the steps above stop on any failure).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$EMULATOR_RUN/cargo-test.log"
