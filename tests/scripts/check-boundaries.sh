#!/usr/bin/env bash
# The library's layers (shared/src/lib.rs explains them). Two rules, read from every
# `crate::…` path outside comments and unit-test modules (`#[cfg(test)]` to the end of a
# file, which may use the in-memory store and any fixture):
#
#  1. No layer imports one above it. Bottom to top:
#       hour.rs, error.rs → model/ → ports.rs → export/ → control/ → readers/ → access/
#       → delivery/ → runtime/
#     A folder may import its own files and any layer below it.
#  2. adapters/ sit beside the layers: they implement the ports with the values of the
#     model, and may use the access probe's round trip; never export, control, readers,
#     delivery or runtime logic. Below runtime, nothing names an adapter or a cloud SDK.
#
# `tests/scripts/check-boundaries.sh --self-test` shows each rule failing on an injected
# import, in a scratch copy.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

# Layer rank of each top-level module of shared/src (adapters: see rule 2).
rank_of() {
  case "$1" in
    hour | error) echo 0 ;;
    model) echo 1 ;;
    ports) echo 2 ;;
    export) echo 3 ;;
    control) echo 4 ;;
    readers) echo 5 ;;
    access) echo 6 ;;
    delivery) echo 7 ;;
    runtime) echo 8 ;;
    *) echo "" ;;
  esac
}
adapters_may_use=" adapters hour error model ports access "

# The code of a file as the compiler sees it outside tests: comments and the unit-test
# module dropped.
code_of() {
  awk '/^#\[cfg\(test\)\]/ { exit } /^[[:space:]]*\/\// { next } { sub(/[[:space:]]\/\/.*$/, ""); print FILENAME ":" FNR ": " $0 }' "$1"
}

check() {
  local src="$1" found=0 file top own rank hits line target
  cd "$src"
  for file in $(find . -name '*.rs' | sed 's|^\./||' | sort); do
    [ "$file" = lib.rs ] && continue
    top="${file%%/*}"
    top="${top%.rs}"
    if grep -qE '(^|[^:])crate::\{' <(code_of "$file"); then
      echo "$file: a grouped \`use crate::{…}\` hides which layers it reaches; name each path whole" >&2
      found=1
    fi
    while IFS= read -r line; do
      for target in $(grep -oE 'crate::[a-z_]+' <<<"$line" | sed 's/^crate:://' | sort -u); do
        [ "$target" = "$top" ] && continue
        if [ "$top" = adapters ]; then
          if [[ "$adapters_may_use" != *" $target "* ]]; then
            echo "$line" >&2
            echo "  ^ adapters implement ports with the model's values; they may not use $target/ (move what they need into model/ or ports.rs)" >&2
            found=1
          fi
          continue
        fi
        own="$(rank_of "$top")"
        [ -z "$own" ] && continue
        if [ "$target" = adapters ]; then
          if [ "$top" != runtime ]; then
            echo "$line" >&2
            echo "  ^ only runtime/ wires adapters; the domain reaches the outside world through ports.rs" >&2
            found=1
          fi
          continue
        fi
        rank="$(rank_of "$target")"
        if [ -n "$rank" ] && [ "$rank" -gt "$own" ]; then
          echo "$line" >&2
          echo "  ^ $top/ (layer $own) imports $target/ (layer $rank), a layer above it" >&2
          found=1
        fi
      done
    done < <(code_of "$file" | grep -E 'crate::[a-z_]+' || true)
    if [ "$top" != runtime ] && [ "$top" != adapters ]; then
      hits="$(code_of "$file" | grep -E '\b(aws_[a-z0-9_]+|azure_[a-z0-9_]+|reqwest|lambda_runtime)::' || true)"
      if [ -n "$hits" ]; then
        echo "$hits" >&2
        echo "  ^ the domain names no cloud SDK or HTTP client: that is an adapter's job" >&2
        found=1
      fi
    fi
  done
  return "$found"
}

if [ "${1:-}" = "--self-test" ]; then
  # Each injection must be refused, and the untouched copy accepted.
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  inject() {
    rm -rf "$scratch/src"
    cp -r "$repo/shared/src" "$scratch/src"
    # At the top: the end of a file is often its unit-test module, which is not read.
    { printf '%s\n' "$2"; cat "$repo/shared/src/$1"; } >"$scratch/src/$1"
    if (check "$scratch/src") 2>"$scratch/err"; then
      echo "self-test: injecting into $1 was NOT refused: $2" >&2
      exit 1
    fi
    echo "refused as it should be: $1 += $2"
    sed 's/^/    /' "$scratch/err"
  }
  rm -rf "$scratch/src" && cp -r "$repo/shared/src" "$scratch/src"
  (check "$scratch/src") || { echo "self-test: the untouched tree is refused" >&2; exit 1; }
  inject export/hour_export.rs 'use crate::control::connection::Connection;'
  inject control/runs.rs 'use crate::delivery::failure::FailureHandler;'
  inject ports.rs 'use crate::export::spec::ExportSpec;'
  inject model/destination.rs 'use crate::ports::ObjectStore;'
  inject adapters/local/store.rs 'use crate::control::ledger::HourLedger;'
  inject access/policy.rs 'use crate::adapters::local::store::LocalStore;'
  inject delivery/notify.rs 'fn sdk(_: aws_sdk_s3::Client) {}'
  echo "boundary self-test: every injected import refused"
  exit 0
fi

if ! (check "$repo/shared/src"); then
  echo "layer boundaries broken (see above): a layer imports only layers below it; see shared/src/lib.rs" >&2
  exit 1
fi
echo "layer boundaries: hour/error → model → ports → export → control → readers → access → delivery → runtime; adapters on ports and the model only"
