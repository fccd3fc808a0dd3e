#!/usr/bin/env bash
# Starts the emulators the tests use and writes their addresses to $EMULATOR_RUN/env.
# Source-able output: `source "$EMULATOR_RUN/env"`. Stop them with stop-emulators.sh.
#   MOTO_URL        moto, no auth (S3, KMS, SES, Scheduler, STS, IAM, Lambda-less)
#   MOTO_AUTH_URL   moto with IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT)
#   AZURITE_URL     Azurite blob over http (SAS tests), account devstoreaccount1
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
mkdir -p "$EMULATOR_RUN"
"$here/stop-emulators.sh" >/dev/null 2>&1 || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url name
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.5
  done
  echo "FATAL: $2 did not come up at $1 (log in $EMULATOR_RUN)" >&2
  exit 1
}

moto_port=$(free_port)
AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  nohup moto_server -H 127.0.0.1 -p "$moto_port" >"$EMULATOR_RUN/moto.log" 2>&1 &
echo $! >"$EMULATOR_RUN/moto.pid"

moto_auth_port=$(free_port)
INITIAL_NO_AUTH_ACTION_COUNT=1000000 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  nohup moto_server -H 127.0.0.1 -p "$moto_auth_port" >"$EMULATOR_RUN/moto-auth.log" 2>&1 &
echo $! >"$EMULATOR_RUN/moto-auth.pid"

azurite_port=$(free_port)
nohup azurite-blob --blobHost 127.0.0.1 --blobPort "$azurite_port" --inMemoryPersistence \
  --skipApiVersionCheck --loose --disableTelemetry --location "$EMULATOR_RUN/azurite" \
  >"$EMULATOR_RUN/azurite.log" 2>&1 &
echo $! >"$EMULATOR_RUN/azurite.pid"

wait_http "http://127.0.0.1:$moto_port/moto-api/" moto
wait_http "http://127.0.0.1:$moto_auth_port/moto-api/" "moto (auth)"
wait_http "http://127.0.0.1:$azurite_port/" azurite

cat >"$EMULATOR_RUN/env" <<ENV
export MOTO_URL=http://127.0.0.1:$moto_port
export MOTO_AUTH_URL=http://127.0.0.1:$moto_auth_port
export AZURITE_URL=http://127.0.0.1:$azurite_port/devstoreaccount1
ENV
cat "$EMULATOR_RUN/env"
