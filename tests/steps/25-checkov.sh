#!/usr/bin/env bash
# Scans the SAM template with checkov (CloudFormation checks). Any failed check fails the
# suite; a check that does not apply is skipped in the resource's Metadata with its reason
# (listed below and in infra/README.md). Runs offline: no guideline download, no update check.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/tests/scripts/env.sh"
cd "$repo"
[ -x "$CHECKOV" ] || { echo "FATAL: $CHECKOV missing: run tests/scripts/install-emulators.sh" >&2; exit 1; }
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE
echo "checkov $("$CHECKOV" --version)"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# checkov evaluates conditions with the parameters' defaults, so the optional fixed-egress
# VPC (FixedEgressAddresses, default none) is scanned in a second rendering whose default is
# two-nat: every resource of the template is checked in one of the two.
mkdir "$out/template" "$out/fixed-egress"
cp infra/template.yaml "$out/template/template.yaml"
sed 's/^    Default: none$/    Default: two-nat/' infra/template.yaml > "$out/fixed-egress/template.yaml"
if cmp -s infra/template.yaml "$out/fixed-egress/template.yaml"; then
  echo "FATAL: the FixedEgressAddresses default was not found" >&2
  exit 1
fi

for variant in template fixed-egress; do
  # All results go to JSON (--quiet would drop the passed and skipped ones); the failed
  # checks and the skips are printed from it below. checkov exits 1 when a check fails.
  rc=0
  "$CHECKOV" -f "$out/$variant/template.yaml" --framework cloudformation --skip-download --compact \
    -o json --output-file-path "$out/$variant" >/dev/null || rc=$?
  python3 "$repo/tests/scripts/checkov-summary.py" "$out/$variant/results_json.json" "$rc" "$variant"
done
