#!/usr/bin/env bash
# Lints the SAM template; any cfn-lint error (or warning) fails the suite. The optional
# fixed-egress VPC is linted as deployed with FixedEgressAddresses=two-nat and one-nat too.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/tests/scripts/env.sh"
cfn-lint --version
cfn-lint "$repo/infra/template.yaml"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for nat in two-nat one-nat; do
  sed "s/^    Default: none$/    Default: $nat/" "$repo/infra/template.yaml" > "$tmp/template-$nat.yaml"
  if cmp -s "$repo/infra/template.yaml" "$tmp/template-$nat.yaml"; then
    echo "FATAL: the FixedEgressAddresses default was not found" >&2
    exit 1
  fi
  cfn-lint "$tmp/template-$nat.yaml"
done
echo "cfn-lint: infra/template.yaml has no errors (and none with FixedEgressAddresses=two-nat or one-nat)"
