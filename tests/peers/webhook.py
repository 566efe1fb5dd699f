"""An HTTP receiver of alarm webhooks, written independently of heatgrid.

It knows only the documented webhook contract: a JSON POST whose body is signed with
HMAC-SHA256 under a shared secret (header X-Heatgrid-Signature: sha256=<hex>) and named by
X-Heatgrid-Delivery. It checks each signature itself (Python's hmac) and appends one JSON line
per request to --log: {"path", "delivery", "signature_ok", "status", "body"}. The first --fail-first
requests are answered 503, to exercise the sender's retries. The secret comes from the
environment variable HEATGRID_TEST_WEBHOOK_SECRET.
"""

import argparse
import hashlib
import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    secret = os.environ.get("HEATGRID_TEST_WEBHOOK_SECRET", "").encode()
    lock = threading.Lock()
    state = {"seen": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
            given = self.headers.get("X-Heatgrid-Signature", "")
            with lock:
                state["seen"] += 1
                status = 503 if state["seen"] <= args.fail_first else 204
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                record = {
                    "path": self.path,
                    "delivery": self.headers.get("X-Heatgrid-Delivery"),
                    "signature_ok": hmac.compare_digest(expected, given),
                    "status": status,
                    "body": body,
                }
                with open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
