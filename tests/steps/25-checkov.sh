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
# All results go to JSON (--quiet would drop the passed and skipped ones); the failed checks
# and the skips are printed from it below. checkov exits 1 when a check fails.
rc=0
"$CHECKOV" -f infra/template.yaml --framework cloudformation --skip-download --compact \
  -o json --output-file-path "$out" >/dev/null || rc=$?

python3 - "$out/results_json.json" "$rc" <<'EOF'
import json, sys
path, rc = sys.argv[1], int(sys.argv[2])
data = json.load(open(path))
reports = data if isinstance(data, list) else [data]
summary = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
lines = []
for report in reports:
    for key in summary:
        summary[key] += report["summary"].get(key, 0)
    results = report.get("results", {})
    for check in results.get("failed_checks", []):
        first, last = check["file_line_range"]
        lines.append(f"  FAILED  {check['check_id']} on {check['resource']} (lines {first}-{last}): {check['check_name']}")
    for check in results.get("skipped_checks", []):
        lines.append(f"  skipped {check['check_id']} on {check['resource']}: {check['check_result'].get('suppress_comment', '')}")
print("\n".join(lines))
print(f"checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped, {summary['parsing_errors']} parsing errors")
# A template that does not parse yields no checks and exit code 0: fail on that too.
if rc != 0 or summary["failed"] or summary["parsing_errors"] or summary["passed"] == 0:
    sys.exit(1)
EOF
