"""A local HTTPS stand-in for the Microsoft Entra ID token endpoint (client-credentials flow),
so the service-principal path runs end to end against Azurite `--oauth basic`.

usage: azure_token_endpoint.py PORT CERT KEY   (env: AZURE_TEST_TENANT_ID, AZURE_TEST_CLIENT_ID,
                                                AZURE_TEST_CLIENT_SECRET: the one valid principal)

POST /{tenant}/oauth2/v2.0/token with client_id, client_secret, grant_type=client_credentials,
scope=https://storage.azure.com/.default. Answers like Entra ID does:
  - right principal → 200 {token_type, expires_in, ext_expires_in, access_token}; the token is a
    JWT with iss https://sts.windows.net/{tenant}/, aud https://storage.azure.com, nbf/iat/exp
    (Azurite checks these, not the signature, so the signature is random bytes);
  - wrong secret    → 401 invalid_client, AADSTS7000215;
  - unknown client  → 400 unauthorized_client, AADSTS700016;
  - unknown tenant  → 400 invalid_request, AADSTS90002.
The secret is never logged (the request log line names only the path and the outcome).
"""
import base64
import json
import os
import secrets
import ssl
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

TENANT = os.environ["AZURE_TEST_TENANT_ID"]
CLIENT_ID = os.environ["AZURE_TEST_CLIENT_ID"]
CLIENT_SECRET = os.environ["AZURE_TEST_CLIENT_SECRET"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(tenant: str, client_id: str) -> str:
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "kid": "event-export-test"}
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + 3600,
        "appid": client_id,
        "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
        "tid": tenant,
        "ver": "1.0",
    }
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(secrets.token_bytes(256))])


def entra_error(status: int, error: str, code: int, description: str):
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} Timestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": "https://login.microsoftonline.com/error?code=" + str(code),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            status, body = 404, {"error": "not_found"}
        elif parts[0] != TENANT:
            status, body = entra_error(400, "invalid_request", 90002, f"Tenant '{parts[0]}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
        elif form.get("grant_type") != "client_credentials":
            status, body = entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        elif form.get("client_id") != CLIENT_ID:
            status, body = entra_error(400, "unauthorized_client", 700016, f"Application with identifier '{form.get('client_id')}' was not found in the directory '{TENANT}'.")
        elif not secrets.compare_digest(form.get("client_secret", ""), CLIENT_SECRET):
            status, body = entra_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '" + CLIENT_ID + "'.")
        else:
            status, body = 200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": jwt(TENANT, CLIENT_ID)}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        # Health check for start-emulators.sh.
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, fmt, *args):
        # Default logging prints the request line only (no body, so never the secret).
        sys.stderr.write("token-endpoint: " + (fmt % args) + "\n")


def main():
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
