"""Prints checkov's failed and skipped checks (with the skip's reason) and the totals of one
scan; exits 1 on any failed check, parsing error or non-zero checkov exit, on a scan that
checked nothing, and when the fixed-egress rendering holds no VPC resource (it would prove
nothing).

Usage: checkov-summary.py RESULTS_JSON CHECKOV_EXIT_CODE VARIANT
"""

import json
import sys

VPC_RESOURCES = {"AWS::EC2::SecurityGroup.FunctionSecurityGroup", "AWS::Logs::LogGroup.VpcFlowLogGroup", "AWS::IAM::Role.VpcFlowLogRole"}

path, rc, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = json.load(open(path))
reports = data if isinstance(data, list) else [data]
summary = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
lines = []
checked = set()
for report in reports:
    for key in summary:
        summary[key] += report["summary"].get(key, 0)
    results = report.get("results", {})
    for check in results.get("passed_checks", []):
        checked.add(check["resource"])
    for check in results.get("failed_checks", []):
        first, last = check["file_line_range"]
        lines.append(f"  FAILED  {check['check_id']} on {check['resource']} (lines {first}-{last}): {check['check_name']}")
    for check in results.get("skipped_checks", []):
        lines.append(f"  skipped {check['check_id']} on {check['resource']}: {check['check_result'].get('suppress_comment', '')}")
print("\n".join(lines))
print(f"checkov ({variant}): {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped, {summary['parsing_errors']} parsing errors")
# A template that does not parse yields no checks and exit code 0: fail on that too.
if rc != 0 or summary["failed"] or summary["parsing_errors"] or summary["passed"] == 0:
    sys.exit(1)
if variant == "fixed-egress" and not VPC_RESOURCES <= checked:
    print(f"FATAL: the fixed-egress rendering lacks {sorted(VPC_RESOURCES - checked)}: was the parameter renamed?")
    sys.exit(1)
