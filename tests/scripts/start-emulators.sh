#!/usr/bin/env bash
# Starts the emulators the tests use and writes their addresses to $EMULATOR_RUN/env.
# Source-able output: `source "$EMULATOR_RUN/env"`. Stop them with stop-emulators.sh.
#   MOTO_URL        moto, no auth (S3, KMS, SES, Scheduler, STS, IAM, Lambda-less)
#   MOTO_AUTH_URL   moto with IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT)
#   MOTO_SERIAL_URL moto serving one request at a time (create-only races; see moto_serial.py)
#   AZURITE_URL     Azurite blob over http (SAS tests), account devstoreaccount1
#   AZURITE_OAUTH_URL     Azurite blob over https with --oauth basic (service-principal tests)
#   AZURE_AUTHORITY_HOST  local https stand-in for the Microsoft Entra ID token endpoint
#   AZURE_TEST_CA_FILE    PEM CA that signed both https servers' certificate
#   EXPORTER_AZURE_EXTRA_CA_FILE  the same CA, for processes that read AzureOptions::from_env()
#   EXPORT_ALLOW_EMULATOR_ENDPOINTS  true: such processes accept Azurite's http/127.0.0.1 URLs
#   AZURE_TEST_TENANT_ID / AZURE_TEST_CLIENT_ID / AZURE_TEST_CLIENT_SECRET  the one valid principal
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

moto_serial_port=$(free_port)
AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  nohup "$EMULATOR_VENV/bin/python" "$here/moto_serial.py" 127.0.0.1 "$moto_serial_port" >"$EMULATOR_RUN/moto-serial.log" 2>&1 &
echo $! >"$EMULATOR_RUN/moto-serial.pid"

azurite_port=$(free_port)
nohup azurite-blob --blobHost 127.0.0.1 --blobPort "$azurite_port" --inMemoryPersistence \
  --skipApiVersionCheck --loose --disableTelemetry \
  >"$EMULATOR_RUN/azurite.log" 2>&1 &
echo $! >"$EMULATOR_RUN/azurite.pid"

wait_http "http://127.0.0.1:$moto_port/moto-api/" moto
wait_http "http://127.0.0.1:$moto_auth_port/moto-api/" "moto (auth)"
wait_http "http://127.0.0.1:$moto_serial_port/moto-api/" "moto (serial)"
wait_http "http://127.0.0.1:$azurite_port/" azurite

# ---- Azure service-principal path (issue 4) ------------------------------------------------
# Azurite accepts OAuth tokens only over HTTPS (`--oauth basic` checks issuer, audience, nbf/exp,
# not the signature), and the official SDK sends a token credential only to https endpoints, so
# this block makes a throwaway CA + server certificate, starts a second Azurite over HTTPS and a
# local HTTPS token endpoint standing in for login.microsoftonline.com. The client secret is
# random per start and only ever written to the env file (mode 600).
tls_dir="$EMULATOR_RUN/azure-tls"
"$EMULATOR_VENV/bin/python" "$here/azure_tls.py" "$tls_dir"
azure_tenant="$(python3 -c 'import uuid; print(uuid.uuid4())')"
azure_client="$(python3 -c 'import uuid; print(uuid.uuid4())')"
azure_secret="$(python3 -c 'import secrets; print("Xq8~" + secrets.token_urlsafe(30))')"

azurite_oauth_port=$(free_port)
nohup azurite-blob --blobHost 127.0.0.1 --blobPort "$azurite_oauth_port" --inMemoryPersistence \
  --skipApiVersionCheck --loose --disableTelemetry --oauth basic \
  --cert "$tls_dir/server.pem" --key "$tls_dir/server-key.pem" \
  >"$EMULATOR_RUN/azurite-oauth.log" 2>&1 &
echo $! >"$EMULATOR_RUN/azurite-oauth.pid"

token_port=$(free_port)
AZURE_TEST_TENANT_ID="$azure_tenant" AZURE_TEST_CLIENT_ID="$azure_client" AZURE_TEST_CLIENT_SECRET="$azure_secret" \
  nohup python3 "$here/azure_token_endpoint.py" "$token_port" "$tls_dir/server.pem" "$tls_dir/server-key.pem" \
  >"$EMULATOR_RUN/azure-token.log" 2>&1 &
echo $! >"$EMULATOR_RUN/azure-token.pid"

wait_https() { # url name
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null --cacert "$tls_dir/ca.pem" "$1"; then return 0; fi
    sleep 0.5
  done
  echo "FATAL: $2 did not come up at $1 (log in $EMULATOR_RUN)" >&2
  exit 1
}
wait_https "https://127.0.0.1:$azurite_oauth_port/" "azurite (https, oauth)"
wait_https "https://127.0.0.1:$token_port/" "token endpoint"
# ---- end of the Azure service-principal block ----------------------------------------------

cat >"$EMULATOR_RUN/env" <<ENV
export MOTO_URL=http://127.0.0.1:$moto_port
export MOTO_AUTH_URL=http://127.0.0.1:$moto_auth_port
export MOTO_SERIAL_URL=http://127.0.0.1:$moto_serial_port
export AZURITE_URL=http://127.0.0.1:$azurite_port/devstoreaccount1
export AZURITE_OAUTH_URL=https://127.0.0.1:$azurite_oauth_port/devstoreaccount1
export AZURE_AUTHORITY_HOST=https://127.0.0.1:$token_port
export AZURE_TEST_CA_FILE=$tls_dir/ca.pem
export EXPORTER_AZURE_EXTRA_CA_FILE=$tls_dir/ca.pem
export EXPORT_ALLOW_EMULATOR_ENDPOINTS=true
export AZURE_TEST_TENANT_ID=$azure_tenant
export AZURE_TEST_CLIENT_ID=$azure_client
export AZURE_TEST_CLIENT_SECRET=$azure_secret
ENV
chmod 600 "$EMULATOR_RUN/env"
# The client secret stays in the file: print everything else.
grep -v AZURE_TEST_CLIENT_SECRET "$EMULATOR_RUN/env"
