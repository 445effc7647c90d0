"""SMTP peer for the email tool's tests: aiosmtpd on 127.0.0.1 with a throwaway CA.

Starts two servers that require AUTH (user `agent`, password `s3cret`): one that offers
STARTTLS (and refuses AUTH before it) and one that speaks TLS from the first byte. Each
delivered message is written to DIR/N.eml with its envelope in DIR/N.json. Prints
`ready STARTTLS_PORT TLS_PORT` once both listen, then serves until stdin closes.

Usage: python smtp.py DIR
"""

import json
import pathlib
import socket
import ssl
import sys

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Store:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        stem = self.directory / str(self.count)
        stem.with_suffix(".eml").write_bytes(envelope.original_content)
        stem.with_suffix(".json").write_text(
            json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos})
        )
        return "250 OK queued as msg-%d" % self.count


def authenticate(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and (
        auth_data.login == b"agent" and auth_data.password == b"s3cret"
    ):
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)


def main():
    directory = pathlib.Path(sys.argv[1])
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(directory / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    store = Store(directory)
    common = dict(
        hostname="127.0.0.1",
        authenticator=authenticate,
        auth_required=True,
        server_hostname="localhost",
    )
    starttls = Controller(
        store, port=free_port(), tls_context=context, require_starttls=True, **common
    )
    wrapped = Controller(
        store, port=free_port(), ssl_context=context, auth_require_tls=False, **common
    )
    starttls.start()
    wrapped.start()
    print("ready", starttls.port, wrapped.port, flush=True)
    sys.stdin.read()
    starttls.stop()
    wrapped.stop()


main()
