"""moto serving one request at a time, for the tests of create-only writes.

moto 5.2.5 checks `If-None-Match: *` and then stores the object without a lock, and
`moto_server` always serves requests on threads: two concurrent create-only puts of one key
can both succeed there (seen once in a loaded test run: two Delta commits both got version
0). Real S3 decides such puts atomically. Served one request at a time, moto does too, while
the writers still race as they would against S3. Same app and request handler as
`moto_server` (moto/server.py), only `threaded=False`.

usage: python moto_serial.py HOST PORT
"""
import os
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
app.debug = True
run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)
