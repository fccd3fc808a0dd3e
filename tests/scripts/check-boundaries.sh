#!/usr/bin/env bash
# The domain folders of the library (export, control, delivery, access) and its ports never
# name an adapter, the runtime wiring or a cloud SDK. Unit-test modules (`#[cfg(test)]` to
# the end of a file) may use the in-memory store, so they are not read.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo/shared/src"
found=0
for file in $(find export control delivery access -name '*.rs') ports.rs error.rs hour.rs; do
  hits="$(awk '/^#\[cfg\(test\)\]/ { exit } /^[[:space:]]*\/\// { next } { print FILENAME ":" FNR ": " $0 }' "$file" |
    grep -E 'crate::(adapters|runtime)|\b(aws_[a-z_]+|azure_[a-z_]+|reqwest|lambda_runtime)::' || true)"
  if [ -n "$hits" ]; then
    echo "$hits"
    found=1
  fi
done
if [ "$found" -ne 0 ]; then
  echo "the domain must reach the outside world through shared/src/ports.rs, not name an adapter or SDK (see above)" >&2
  exit 1
fi
echo "domain boundaries: no adapter, runtime or SDK named in export/, control/, delivery/, access/, ports.rs"
