"""A mail server for the alarm e-mail tests: aiosmtpd (from PyPI), not written by us.

It offers STARTTLS with the given certificate and requires it, then AUTH (LOGIN or PLAIN)
with the user and password from HEATGRID_TEST_SMTP_USER / HEATGRID_TEST_SMTP_PASSWORD, and
appends one JSON line per accepted mail to --log: {"from", "to", "subject", "text", "tls",
"user"}. A mail without STARTTLS or AUTH is refused by aiosmtpd itself.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    user = os.environ["HEATGRID_TEST_SMTP_USER"].encode()
    password = os.environ["HEATGRID_TEST_SMTP_PASSWORD"].encode()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login == user and auth_data.password == password
        )
        return AuthResult(success=ok, handled=False)

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            body = msg.get_body(preferencelist=("plain",))
            record = {
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "subject": str(msg["Subject"]),
                "text": body.get_content() if body is not None else "",
                "tls": session.ssl is not None,
                "user": session.authenticated and user.decode(),
            }
            with open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            return "250 OK"

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=args.port,
        tls_context=ctx,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticator,
        ready_timeout=10,
    )
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    raise SystemExit(main())
