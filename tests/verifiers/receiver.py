"""A webhook receiver that checks the operator's calls with libraries we did
not write, for tests/it/signing.rs and tests/it/identity.rs.

- Standard Webhooks `v1` (HMAC-SHA256) with the `standardwebhooks` package;
  `v1a` (Ed25519) with the `cryptography` package, since the former checks
  `v1` only.
- Bearer JWTs (Kubernetes ServiceAccount tokens) with PyJWT, against the API
  server's own JWKS (`/openid/v1/jwks`), issuer and an audience.

Usage:
  receiver.py serve --log FILE [--must KEYS]... [--must-not KEYS]...
      [--ed25519 whpk_...] [--jwks FILE --issuer ISS --audience AUD]
      [--fail-first N] [--refuse-status CODE]
  receiver.py public-key whsk_...      prints the whpk_ key of a whsk_ key

`serve` binds 127.0.0.1 on a free port, prints `listening on PORT`, and
writes one JSON line per request to FILE: its webhook headers, the body, and
what each check found. It answers 200 when every check passes (each --must
set verifies, no --must-not set does, the Ed25519 key verifies, the JWT is
valid), the --refuse-status (401) otherwise, and 503 to the first
--fail-first requests that pass. It stops when its parent's stdin closes.
"""

import argparse
import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import standardwebhooks
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def v1_verifies(keys, body, headers):
    """True when one of the whsec_ `keys` verifies, as a receiver would."""
    for key in keys.split():
        try:
            standardwebhooks.Webhook(key).verify(body, headers)
            return True
        except standardwebhooks.WebhookVerificationError:
            pass
    return False


def v1a_verifies(public_key, body, headers):
    """True when one `v1a,` signature verifies with `public_key` (whpk_)."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    for signature in headers.get("webhook-signature", "").split(" "):
        version, _, encoded = signature.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(encoded), content)
            return True
        except (InvalidSignature, ValueError):
            pass
    return False


def jwt_claims(args, authorization):
    """The verified claims of the bearer JWT, or {"error": why}."""
    if not authorization.startswith("Bearer "):
        return {"error": "no bearer token"}
    token = authorization.removeprefix("Bearer ")
    keys = jwt.PyJWKSet.from_json(open(args.jwks).read())
    kid = jwt.get_unverified_header(token).get("kid")
    try:
        key = next(k for k in keys.keys if k.key_id == kid)
        claims = jwt.decode(token, key=key, algorithms=["RS256", "ES256"], audience=args.audience,
                            issuer=args.issuer, options={"require": ["exp", "iat", "sub", "aud"]})
    except (StopIteration, jwt.PyJWTError) as e:
        return {"error": f"{type(e).__name__}: {e}", "token": token}
    return {"claims": claims, "token": token}


def serve(args):
    lock = threading.Lock()
    passed = [0]
    log = open(args.log, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            record = {"path": self.path, "body": body.decode("utf-8", "replace"),
                      **{k: headers.get(k) for k in ("webhook-id", "webhook-timestamp", "webhook-signature",
                                                      "idempotency-key")}}
            signed = all(k in headers for k in ("webhook-id", "webhook-timestamp", "webhook-signature"))
            record["must"] = [signed and v1_verifies(keys, body, headers) for keys in args.must]
            record["must_not"] = [signed and v1_verifies(keys, body, headers) for keys in args.must_not]
            ok = all(record["must"]) and not any(record["must_not"])
            if args.ed25519:
                record["v1a"] = signed and v1a_verifies(args.ed25519, body, headers)
                ok = ok and record["v1a"]
            if args.jwks:
                record["jwt"] = jwt_claims(args, headers.get("authorization", ""))
                ok = ok and "claims" in record["jwt"]
            with lock:
                if ok and passed[0] < args.fail_first:
                    status = 503
                elif ok:
                    status = 200
                else:
                    status = args.refuse_status
                passed[0] += ok
                record["status"] = status
                log.write(json.dumps(record) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The test holds our stdin: when it ends (or dies), so do we.
    sys.stdin.read()
    server.shutdown()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--log", required=True)
    s.add_argument("--must", action="append", default=[])
    s.add_argument("--must-not", action="append", default=[])
    s.add_argument("--ed25519")
    s.add_argument("--jwks")
    s.add_argument("--issuer")
    s.add_argument("--audience")
    s.add_argument("--fail-first", type=int, default=0)
    s.add_argument("--refuse-status", type=int, default=401)
    p = sub.add_parser("public-key")
    p.add_argument("key")
    args = parser.parse_args()
    if args.command == "public-key":
        seed = base64.b64decode(args.key.removeprefix("whsk_"))
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        print("whpk_" + base64.b64encode(public).decode())
    else:
        serve(args)


if __name__ == "__main__":
    main()
