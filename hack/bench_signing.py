"""`make bench`'s signing section (BENCH_ONLY=signing): what Standard Webhooks
signatures cost in delivery throughput.

BENCH_SIGNING (5000) jobs of 1 KiB to a Destination, drained by a fresh
operator, in three namespaces created up front: no signing, one `whsec_` key
(v1), and a `whsec_` plus a `whsk_` key (v1 and v1a, as during a rotation to
Ed25519). Then the unsigned one again, so the API server's drift as its
store grows cancels out. It prints jobs/s for each and the ratios of the
signed drains to the mean of the two unsigned ones.
Called by hack/bench.py with itself as `b`, for its helpers.
"""

import base64
import os
import time

JOBS = int(os.environ.get("BENCH_SIGNING", 5000))
KEYS = {
    "none": None,
    "v1": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
    "v1+v1a": " ".join(["whsec_" + base64.b64encode(os.urandom(32)).decode(),
                        "whsk_" + base64.b64encode(os.urandom(32)).decode()]),
}


def destination(keys, base):
    spec = {"url": base}
    if keys:
        spec["signing"] = {"standardWebhooks": {"secretKeyRef": {"name": "signing", "key": "keys"}}}
    return {"apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination", "metadata": {"name": "api"},
            "spec": spec}


def job(name):
    return {"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": name},
            "spec": {"destinationRef": {"name": "api"}, "target": {"path": "/api2/simulate"},
                     "payload": {"name": name, "filler": "x" * 1024}}}


def run(b):
    api2 = b.Api2("api2-signing")
    runs = [("none", "unsigned-1"), ("v1", "v1"), ("v1+v1a", "v1-v1a"), ("none", "unsigned-2")]
    namespaces = []
    for kind, suffix in runs:
        ns = b.namespace(f"signing-{suffix}")
        keys = KEYS[kind]
        items = [destination(keys, api2.base)]
        if keys:
            items.insert(0, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "signing"},
                             "stringData": {"keys": keys}})
        b.create(ns, items)
        b.create(ns, [job(f"signed-{n}") for n in range(JOBS)])
        namespaces.append((kind, ns))
    rates = {}
    for kind, ns in namespaces:
        started = time.time()
        operator = b.Operator(ns, *b.DRAIN_CALLS)
        b.wait(f"{JOBS} jobs to succeed", 900, lambda: operator.succeeded() >= JOBS, every=0.5)
        rates.setdefault(kind, []).append(JOBS / (time.time() - started))
        b.stop(operator.child)
    unsigned = sum(rates["none"]) / len(rates["none"])
    v1, both = rates["v1"][0], rates["v1+v1a"][0]
    print(f"signing: {JOBS} jobs (1 KiB) through one Destination, {b.DRAIN_CALLS[1]} calls at once: unsigned "
          f"{rates['none'][0]:.0f} and {rates['none'][1]:.0f} jobs/s (mean {unsigned:.0f}); v1 (HMAC-SHA256) {v1:.0f} "
          f"jobs/s, ratio {v1 / unsigned:.2f}; v1 + v1a (HMAC and Ed25519) {both:.0f} jobs/s, ratio {both / unsigned:.2f}")
