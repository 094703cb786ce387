#!/usr/bin/env python3
"""An independent receiver for Havn's SLA alerts: an HTTPS server on loopback that
checks each Standard Webhooks request with implementations that are not Havn's: the
`v1` HMAC signature with the PyPI `standardwebhooks` package, the `v1a` Ed25519
signature (the node key's) with `cryptography`, and opens the HPKE-sealed body with
`pyhpke`. Each delivery is appended to --out as one JSON line. Runs until killed.

Modes: --fail-first N answers 500 to the first N deliveries; --slow-first S holds the
first answer S seconds; --gone answers 410 Gone to everything."""
import argparse
import base64
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.exceptions import InvalidSignature
from pyhpke import AEADId, CipherSuite, KDFId, KEMId
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAGIC = b"HAVNENC1"
SUITE = bytes.fromhex("002000010003")
HEADER = 8 + 6 + 32 + 32


def open_envelope(env, sk_bytes):
    if env[:8] != MAGIC or env[8:14] != SUITE:
        raise ValueError("not a HAVNENC1 envelope with the X25519/HKDF-SHA256/ChaCha20 suite")
    recipient, enc = env[14:46], env[46:78]
    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)
    skr = suite.kem.deserialize_private_key(sk_bytes)
    info = b"havn/payload/v1\x00" + recipient
    ctx = suite.create_recipient_context(enc, skr, info=info)
    return ctx.open(env[HEADER:], aad=env[:HEADER])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--node-key", help="the node's ed25519 public key (hex); without it v1a is not checked here")
    ap.add_argument("--recipient-secret", required=True, help="our X25519 private key (hex)")
    ap.add_argument("--secret", required=True, help="the whsec_ secret of the v1 signature")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--slow-first", type=float, default=0)
    ap.add_argument("--gone", action="store_true")
    ap.add_argument("--save-dir", help="also keep each delivery's raw body and headers (N.body, N.headers.json)")
    a = ap.parse_args()
    node = Ed25519PublicKey.from_public_bytes(bytes.fromhex(a.node_key)) if a.node_key else None
    sk = bytes.fromhex(a.recipient_secret)
    v1 = Webhook(a.secret)
    lock = threading.Lock()
    seen = {"n": 0}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                seen["n"] += 1
                n = seen["n"]
            headers = {k.lower(): v for k, v in self.headers.items()}
            rec = {"n": n, "id": headers.get("webhook-id"), "timestamp": headers.get("webhook-timestamp")}
            try:
                v1.verify(body, headers)
                rec["v1"] = True
            except WebhookVerificationError as e:
                rec["v1"] = False
                rec["v1_error"] = str(e)
            sigs = dict(s.split(",", 1) for s in headers.get("webhook-signature", "").split(" ") if "," in s)
            content = f"{rec['id']}.{rec['timestamp']}.".encode() + body
            if node is None:
                rec["v1a"] = None
            else:
                try:
                    node.verify(base64.b64decode(sigs.get("v1a", "")), content)
                    rec["v1a"] = True
                except (InvalidSignature, ValueError):
                    rec["v1a"] = False
            try:
                outer = json.loads(body)
                plain = open_envelope(base64.b64decode(outer["sealed"]), sk)
                rec["alert"] = json.loads(plain)
                rec["outer_type"] = outer.get("type")
            except Exception as e:  # noqa: BLE001 - recorded for the test to report
                rec["open_error"] = repr(e)
            if n == 1 and a.slow_first:
                import time
                time.sleep(a.slow_first)
            status = 410 if a.gone else (500 if n <= a.fail_first else 204)
            rec["status"] = status
            if a.save_dir:
                import os
                os.makedirs(a.save_dir, exist_ok=True)
                with open(os.path.join(a.save_dir, f"{n}.body"), "wb") as f:
                    f.write(body)
                with open(os.path.join(a.save_dir, f"{n}.headers.json"), "w") as f:
                    json.dump(headers, f)
            with lock, open(a.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", a.port), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
