"""`make bench`'s tracing section (BENCH_ONLY=tracing): what tracing costs in
delivery throughput, off and on.

BENCH_TRACING (5000) jobs of 1 KiB, each with a trace context of its own in
its annotations (as the intake stores it), to one Destination, drained by a
fresh operator, in namespaces created up front, in this order:
  - before: the operator built from $BENCH_BASE_BIN, the last commit without
    tracing (hack/bench.sh builds it), the reference for "off costs nothing";
  - off: this operator, no OTLP endpoint (calls hand the stored context on);
  - on: this operator exporting every span (4 per job) with OTLP to a real
    Jaeger (hack/tools.sh jaeger), parent-based sampling, all sampled;
then the three again in reverse order, so the API server's drift as its
store grows cancels out. It prints jobs/s for each, and the ratios of off
to before and of on to off, from the means of the two drains of each.
Called by hack/bench.py with itself as `b`, for its helpers.
"""

import os
import socket
import subprocess
import time

JOBS = int(os.environ.get("BENCH_TRACING", 5000))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jaeger(b):
    binary = subprocess.run([os.path.join(ROOT, "hack/tools.sh"), "jaeger"], capture_output=True, text=True,
                            check=True).stdout.strip()
    otlp, query, grpc = free_port(), free_port(), free_port()
    config = os.path.join(b.WORK, "jaeger.yaml")
    with open(config, "w") as f:
        f.write(f"""service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}}
  telemetry: {{metrics: {{level: none}}, logs: {{level: warn}}}}
extensions:
  jaeger_query:
    storage: {{traces: memory}}
    http: {{endpoint: "127.0.0.1:{query}"}}
    grpc: {{endpoint: "127.0.0.1:{grpc}"}}
  jaeger_storage:
    backends: {{memory: {{memory: {{max_traces: 100000}}}}}}
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{otlp}"}}}}}}
processors:
  batch:
exporters:
  jaeger_storage_exporter: {{trace_storage: memory}}
""")
    child = b.start("jaeger", binary, f"--config=file:{config}")
    b.wait("Jaeger's query API", 60, lambda: ok(b, f"http://127.0.0.1:{query}/api/services"))
    return child, f"http://127.0.0.1:{otlp}", f"http://127.0.0.1:{query}"


def ok(b, url):
    try:
        b.http(url)
        return True
    except OSError:
        return False


def job(name, n):
    trace = f"{n + 1:032x}"
    return {"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
            "metadata": {"name": name, "annotations": {"pendingjob.dev/traceparent": f"00-{trace}-{n + 1:016x}-01"}},
            "spec": {"destinationRef": {"name": "api"}, "target": {"path": "/api2/simulate"},
                     "payload": {"name": name, "filler": "x" * 1024}}}


def run(b):
    base = os.environ.get("BENCH_BASE_BIN")
    if not base:
        raise SystemExit("bench tracing: BENCH_BASE_BIN (the operator without tracing) is not set; run it with make bench")
    api2 = b.Api2("api2-tracing")
    collector, otlp, query = jaeger(b)
    kinds = {"before": ((), base), "off": ((), None), "on": (("--otlp-endpoint", otlp), None)}
    order = ["before", "off", "on", "on", "off", "before"]
    namespaces = []
    for n, kind in enumerate(order):
        ns = b.namespace(f"tracing-{kind}-{n}")
        b.create(ns, [{"apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination", "metadata": {"name": "api"},
                       "spec": {"url": api2.base}}])
        b.create(ns, [job(f"traced-{i}", n * JOBS + i) for i in range(JOBS)])
        namespaces.append((kind, ns))
    rates = {}
    for kind, ns in namespaces:
        args, binary = kinds[kind]
        started = time.time()
        operator = b.Operator(ns, *b.DRAIN_CALLS, *args, binary=binary)
        b.wait(f"{JOBS} jobs to succeed", 900, lambda: operator.succeeded() >= JOBS, every=0.5)
        rates.setdefault(kind, []).append(JOBS / (time.time() - started))
        b.stop(operator.child)
    services = b.http(f"{query}/api/services")
    b.stop(collector)
    mean = {kind: sum(r) / len(r) for kind, r in rates.items()}
    each = "; ".join(f"{kind} {' and '.join(f'{r:.0f}' for r in rates[kind])} jobs/s (mean {mean[kind]:.0f})"
                     for kind in ("before", "off", "on"))
    print(f"tracing: {JOBS} jobs (1 KiB, each in a trace of its own) through one Destination, "
          f"{b.DRAIN_CALLS[1]} calls at once: {each}; off/before {mean['off'] / mean['before']:.2f}, "
          f"on/off {mean['on'] / mean['off']:.2f} (Jaeger's services: {services.strip()})")
