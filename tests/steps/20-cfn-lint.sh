#!/usr/bin/env bash
# Lints the SAM template; any cfn-lint error (or warning) fails the suite.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/tests/scripts/env.sh"
cfn-lint --version
cfn-lint "$repo/infra/template.yaml"
echo "cfn-lint: infra/template.yaml has no errors"
