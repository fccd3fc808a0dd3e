#!/usr/bin/env bash
# Conventions first: the tree is formatted (rustfmt.toml) and clippy finds nothing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/tests/scripts/env.sh"
cd "$repo"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "fmt and clippy: clean"
