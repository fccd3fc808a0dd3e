#!/usr/bin/env bash
# Conventions first: the tree is formatted (rustfmt.toml), clippy finds nothing, and the
# domain folders name no adapter.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/tests/scripts/env.sh"
cd "$repo"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "fmt and clippy: clean"
bash tests/scripts/check-boundaries.sh
