#!/usr/bin/env python3
"""`make bench`: figures, never assertions (hack/bench.sh builds and sets up).

Every run uses the release binaries in $BIN_DIR, the cluster in $KUBECONFIG
and the pinned kubectl in $PATH. Everything binds 127.0.0.1, is bounded in
count and time, and is stopped by PID. Sizes can be lowered for a quick look:
BENCH_SINGLE (100), BENCH_RETRYING (1000), BENCH_DRAIN (10000), BENCH_BIG (2000),
BENCH_BREAKER (500), BENCH_INTAKE (2000), SCALE_N (100000, see hack/bench_scale.py),
BENCH_SIGNING (5000, see hack/bench_signing.py), BENCH_TRACING (5000, see
hack/bench_tracing.py).
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BIN = os.environ["BIN_DIR"]
RUN = f"bench-{os.getpid()}"
SINGLE = int(os.environ.get("BENCH_SINGLE", 100))
RETRYING = int(os.environ.get("BENCH_RETRYING", 1000))
DRAIN = int(os.environ.get("BENCH_DRAIN", 10000))
BIG = int(os.environ.get("BENCH_BIG", 2000))
BREAKER = int(os.environ.get("BENCH_BREAKER", 500))
INTAKE = int(os.environ.get("BENCH_INTAKE", 2000))
# BENCH_ONLY=latency,lateness,isolation,drain,breaker,intake,signing,tracing,scale runs only those sections.
WORK = tempfile.mkdtemp(prefix="pendingjob-bench-")
# Runs with a single target let it have the whole pool of 16 calls; the
# isolation run keeps the defaults (16 in all, 4 per target).
ONE_TARGET = ("--max-concurrent-per-target", "16")
# The drain: 32 jobs at once (a slot spans a job's read, call and write),
# against the tight client's 32 writes at once.
DRAIN_CALLS = ("--max-concurrent-dispatches", os.environ.get("BENCH_DRAIN_CALLS", "32"),
               "--max-concurrent-per-target", os.environ.get("BENCH_DRAIN_CALLS", "32"))
children = []


def kubectl(*args, stdin=None):
    out = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args[:3])}: {out.stderr.strip()}")
    return out.stdout


def wait(what, timeout, check, every=0.2):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            sys.exit(f"bench: timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def http(url, method="GET"):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as response:
        return response.read().decode()


def start(name, *args):
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    child = subprocess.Popen(args, stdout=subprocess.PIPE if name.startswith("api2") else log, stderr=log, text=True)
    children.append(child)
    return child


def stop(child):
    child.terminate()
    try:
        child.wait(timeout=40)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


class Api2:
    def __init__(self, name, *args):
        self.child = start(name, f"{BIN}/mock-api2", "--listen", "127.0.0.1:0", *args)
        self.base = re.search(r"http://\S+", self.child.stdout.readline()).group(0)
        self.url = f"{self.base}/api2/simulate"

    def stats(self):
        return json.loads(http(f"{self.base}/api2/stats"))

    def toggle(self):
        http(f"{self.base}/api2/toggle", "POST")


class Operator:
    def __init__(self, namespace, *args, binary=None):
        self.name = f"operator-{namespace}"
        self.child = start(self.name, binary or f"{BIN}/pendingjob-operator", "run", "--namespace", namespace,
                           "--admin-listen", "127.0.0.1:0", "--leader-election=false", *args)
        log = os.path.join(WORK, f"{self.name}.log")
        port = wait("the operator's admin address", 30,
                    lambda: re.search(r"admin server listening.*127\.0\.0\.1:(\d+)", open(log).read()))
        self.admin = f"http://127.0.0.1:{port.group(1)}"
        wait("the operator to be ready", 60, lambda: self.ready())

    def ready(self):
        try:
            return http(f"{self.admin}/readyz") == "ok"
        except OSError:
            return False

    def metric(self, series):
        for line in http(f"{self.admin}/metrics").splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    def succeeded(self):
        # One series per namespace; the operator watches one.
        return sum(float(line.split()[-1]) for line in http(f"{self.admin}/metrics").splitlines()
                   if line.startswith("pendingjob_jobs{") and 'phase="Succeeded"' in line)

    def rss_mib(self):
        for line in open(f"/proc/{self.child.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def namespace(suffix):
    name = f"{RUN}-{suffix}"
    kubectl("create", "namespace", name)
    return name


def job(name, url, payload_bytes=0, policy="{}", timeout=10):
    payload = {"name": name, "filler": "x" * payload_bytes}
    return {"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": name},
            "spec": {"target": {"url": url, "timeoutSeconds": timeout}, "payload": payload,
                     "retryPolicy": json.loads(policy) if policy != "{}" else {}}}


def create(ns, jobs, chunk=250, parallel=4):
    """Creates `jobs` with `kubectl create`, `parallel` chunks at a time."""
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]

    def one(items):
        kubectl("create", "--namespace", ns, "-o", "name", "-f", "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, chunks))


def apiserver_writes():
    """Writes the API server counted for PendingJobs and Events, and its GETs of
    single PendingJobs ("reads"), from its own /metrics."""
    totals = {"pendingjobs": 0.0, "events": 0.0, "reads": 0.0}
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("resource") in totals and labels.get("verb") not in ("GET", "LIST", "WATCH"):
            totals[labels["resource"]] += float(line.split()[-1])
        if labels.get("resource") == "pendingjobs" and labels.get("verb") == "GET":
            totals["reads"] += float(line.split()[-1])
    return totals


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Proxy:
    """One `kubectl proxy` for the whole latency run: creating each job
    through it times the API request, not kubectl's start (about 60 ms)."""

    def __init__(self):
        self.child = start("kubectl-proxy", "kubectl", "proxy", "--address=127.0.0.1", "--port=0")
        log = os.path.join(WORK, "kubectl-proxy.log")
        port = wait("kubectl proxy to listen", 30, lambda: re.search(r"127\.0\.0\.1:(\d+)", open(log).read()))
        self.base = f"http://127.0.0.1:{port.group(1)}"

    def create_job(self, ns, body):
        request = urllib.request.Request(f"{self.base}/apis/pendingjob.dev/v1alpha1/namespaces/{ns}/pendingjobs",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["metadata"]["uid"]


def latency():
    ns = namespace("latency")
    api2 = Api2("api2-latency")
    proxy = Proxy()
    operator = Operator(ns, *ONE_TARGET)
    print(f"idle: operator RSS {operator.rss_mib():.1f} MiB")
    samples, after_return = [], []
    for n in range(SINGLE):
        before = time.time() * 1000
        uid = proxy.create_job(ns, job(f"single-{n}", api2.url))
        returned = time.time() * 1000
        first = wait("the first call", 10, lambda: next(
            (r["atMs"] for r in api2.stats()["requests"] if r["key"] == uid), None), every=0.01)
        samples.append(first - before)
        after_return.append(first - returned)
    print(f"apply -> first call (n={len(samples)}): p50 {pct(samples, 50):.0f} ms, "
          f"p99 {pct(samples, 99):.0f} ms, max {max(samples):.0f} ms from sending the create (through one "
          f"`kubectl proxy`); p50 {pct(after_return, 50):.0f} ms, p99 {pct(after_return, 99):.0f} ms from "
          f"its answer (negative: the call came first)")
    stop(operator.child)
    stop(proxy.child)


def lateness_and_writes():
    ns = namespace("retrying")
    api2 = Api2("api2-retrying", "--fail")
    operator = Operator(ns, *ONE_TARGET)
    delay_ms = 8000
    # Created one chunk at a time (a few seconds in all), so their retries
    # come due at a pace the API server can record; created all at once they
    # come due faster than it writes, and the lateness is its queue.
    created = time.time()
    create(ns, [job(f"retry-{n}", api2.url, 100, '{"initialDelaySeconds": 8, "multiplier": 1}')
                for n in range(RETRYING)], parallel=1)
    created = time.time() - created
    wait("every job to be retrying", 120, lambda: api2.stats()["uniqueKeys"] >= RETRYING)
    time.sleep(delay_ms / 1000)  # every job past its first retry
    writes_before, calls_before, window_start = apiserver_writes(), api2.stats()["totalRequests"], time.time() * 1000
    time.sleep(4 * delay_ms / 1000)  # the measurement window: 4 retries of each job
    writes_after, stats = apiserver_writes(), api2.stats()
    calls = stats["totalRequests"] - calls_before
    by_key = {}
    for r in stats["requests"]:
        if r["atMs"] >= window_start:
            by_key.setdefault(r["key"], []).append(r["atMs"])
    late = [b - a - delay_ms for arrivals in by_key.values() for a, b in zip(arrivals, arrivals[1:])]
    print(f"retry lateness ({RETRYING} jobs created over {created:.1f} s, retrying every 8 s, {len(late)} retries): "
          f"p50 {pct(late, 50):.0f} ms, p99 {pct(late, 99):.0f} ms, max {max(late):.0f} ms")
    status = writes_after["pendingjobs"] - writes_before["pendingjobs"]
    events = writes_after["events"] - writes_before["events"]
    reads = writes_after["reads"] - writes_before["reads"]
    print(f"API writes per attempt while retrying: {status / calls:.3f} status + {events / calls:.3f} Event, "
          f"and {reads / calls:.3f} reads ({calls} attempts; from apiserver_request_total)")
    api2.toggle()
    wait("every job to succeed", 300, lambda: operator.succeeded() >= RETRYING)
    time.sleep(2)  # the last writes and Events land
    quiet_before = apiserver_writes()
    time.sleep(10)
    quiet_after = apiserver_writes()
    quiet = sum(quiet_after.values()) - sum(quiet_before.values())
    print(f"API writes in 10 s with {RETRYING} finished jobs and nothing due: {quiet:.0f}")
    stop(operator.child)


def drain_and_memory():
    # The reference brackets the drain: the tight client records first
    # attempts of jobs like the drain's before and after it, each set in a
    # namespace of its own, all created up front, with no operator running;
    # their mean cancels the API server's drift as its store grows.
    api2 = Api2("api2-drain")
    before, ns, after = namespace("reference-1"), namespace("drain"), namespace("reference-2")
    for each in (before, ns, after):
        create(each, [job(f"drain-{n}", api2.url, 1024) for n in range(DRAIN)])
    raw_before = kubectl_tight_client(before)
    reads_before = apiserver_writes()["reads"]
    started = time.time()
    operator = Operator(ns, *DRAIN_CALLS)
    wait(f"{DRAIN} jobs to succeed", 900, lambda: operator.succeeded() >= DRAIN, every=0.5)
    drained = DRAIN / (time.time() - started)
    reads = apiserver_writes()["reads"] - reads_before
    print(f"memory: operator RSS {operator.rss_mib():.1f} MiB with {DRAIN} jobs of 1 KiB payload")
    stop(operator.child)
    raw_after = kubectl_tight_client(after)
    raw = (raw_before + raw_after) / 2
    print(f"drain: {DRAIN} jobs (1 KiB) at {drained:.0f} jobs/s from the operator's start, with {DRAIN_CALLS[1]} "
          f"calls at once and {reads / DRAIN:.3f} reads per job; a tight client records the same first attempts at "
          f"{raw_before:.0f}/s before and {raw_after:.0f}/s after ({DRAIN_CALLS[1]} at once) on the same API server: "
          f"ratio {drained / raw:.2f} to their mean")

    ns = namespace("big")
    create(ns, [job(f"big-{n}", api2.url, 64 * 1024) for n in range(BIG)], chunk=50)
    operator = Operator(ns, *ONE_TARGET)
    wait(f"{BIG} big jobs to succeed", 600, lambda: operator.succeeded() >= BIG, every=0.5)
    print(f"memory: operator RSS {operator.rss_mib():.1f} MiB with {BIG} jobs of 64 KiB payload")
    stop(operator.child)


def kubectl_tight_client(ns):
    out = subprocess.run([f"{BIN}/examples/status_patch_rate", ns, DRAIN_CALLS[1]], capture_output=True, text=True,
                         check=True)
    return float(re.search(r"([\d.]+)/s", out.stdout).group(1))


def isolation():
    hanging = Api2("api2-hanging", "--latency-ms", "3600000")
    healthy = Api2("api2-healthy")

    def healthy_time(suffix, with_hanging):
        ns = namespace(suffix)
        operator = Operator(ns)
        if with_hanging:
            create(ns, [job(f"hang-{n}", hanging.url, 100, timeout=30) for n in range(40)])
            wait("the hanging target's share", 30, lambda: hanging.stats()["totalRequests"] >= 4)
        started = time.time()
        create(ns, [job(f"ok-{n}", healthy.url, 100) for n in range(40)])
        wait("40 healthy jobs", 60, lambda: operator.succeeded() >= 40, every=0.05)
        elapsed = time.time() - started
        stop(operator.child)
        return elapsed

    alone = healthy_time("alone", False)
    beside = healthy_time("beside", True)
    print(f"isolation: 40 healthy jobs succeed in {alone:.2f} s alone, {beside:.2f} s beside 40 jobs "
          f"on a target that never answers: ratio {beside / alone:.2f}")


def breaker():
    """500 jobs on a Destination whose target fails for 30 s, then recovers,
    with the circuit breaker on (5 failures open it for 5 s) and off."""
    outage = 30

    def run(suffix, circuit_breaker):
        api2 = Api2(f"api2-breaker-{suffix}", "--fail")
        ns = namespace(f"breaker-{suffix}")
        spec = {"url": api2.base}
        if circuit_breaker:
            spec["circuitBreaker"] = {"consecutiveFailures": 5, "openSeconds": 5}
        kubectl("apply", "--namespace", ns, "-f", "-", stdin=json.dumps(
            {"apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination", "metadata": {"name": "fragile"},
             "spec": spec}))
        operator = Operator(ns)
        jobs = []
        for n in range(BREAKER):
            one = job(f"fragile-{n}", "", 100, '{"initialDelaySeconds": 1, "maxDelaySeconds": 1}')
            one["spec"]["target"] = {"path": "/api2/simulate"}
            one["spec"]["destinationRef"] = {"name": "fragile"}
            jobs.append(one)
        started = time.time()
        create(ns, jobs)
        time.sleep(max(0.0, outage - (time.time() - started)))  # the outage
        during = api2.stats()["totalRequests"]
        api2.toggle()
        recovered = time.time()
        wait(f"{BREAKER} jobs to succeed", 300, lambda: operator.succeeded() >= BREAKER, every=0.1)
        took = time.time() - recovered
        total = api2.stats()["totalRequests"]
        stop(operator.child)
        stop(api2.child)
        return during, took, total

    on = run("on", True)
    off = run("off", False)
    print(f"circuit breaker, {BREAKER} jobs retrying every 1 s, target down {outage} s: with the breaker "
          f"{on[0]} calls during the outage, all succeeded {on[1]:.1f} s after recovery ({on[2]} calls in all); "
          f"without it {off[0]} calls during the outage, {off[1]:.1f} s after recovery ({off[2]} calls in all)")


def intake():
    """Creates through pendingjob-intake beside a tight client's creates of
    the same jobs on the same API server, 32 at once each."""
    api2 = Api2("api2-intake")
    ns = namespace("intake")
    kubectl("apply", "--namespace", ns, "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination", "metadata": {"name": "api2"},
         "spec": {"url": api2.url}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bench"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "writer"},
         "rules": [{"apiGroups": ["pendingjob.dev"], "resources": ["pendingjobs"], "verbs": ["create", "get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "writer"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer"},
         "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": ns}]}]}))
    token = kubectl("create", "token", "bench", "--namespace", ns, "--duration", "1h",
                    "--audience", "pendingjob-intake").strip()
    child = start("intake", f"{BIN}/pendingjob-intake", "--listen", "127.0.0.1:0")
    log = os.path.join(WORK, "intake.log")
    port = wait("the intake to listen", 30, lambda: re.search(r"address=127\.0\.0\.1:(\d+)", open(log).read()))
    out = subprocess.run([f"{BIN}/examples/create_rate", ns, "api2", f"http://127.0.0.1:{port.group(1)}", token,
                          str(INTAKE), "32"], capture_output=True, text=True, check=True).stdout
    stop(child)
    rates = dict(re.findall(r"^(raw|intake) creates: .*?([\d.]+)/s", out, re.M))
    print(out.strip().replace("\n", "; "))
    print(f"intake: {rates['intake']}/s against {rates['raw']}/s for a tight client's creates of the same jobs: "
          f"ratio {float(rates['intake']) / float(rates['raw']):.2f}")


def scale():
    import bench_scale
    bench_scale.run(sys.modules[__name__])


def signing():
    import bench_signing
    bench_signing.run(sys.modules[__name__])


def tracing():
    import bench_tracing
    bench_tracing.run(sys.modules[__name__])


def main():
    sections = {"latency": latency, "lateness": lateness_and_writes, "isolation": isolation,
                "drain": drain_and_memory, "breaker": breaker, "intake": intake, "signing": signing,
                "tracing": tracing, "scale": scale}
    only = os.environ.get("BENCH_ONLY", ",".join(sections)).split(",")
    try:
        for name in only:
            sections[name]()
    finally:
        for child in children:
            if child.poll() is None:
                stop(child)
        namespaces = [n for n in kubectl("get", "namespaces", "-o", "name").split() if RUN in n]
        if namespaces:
            kubectl("delete", "--wait=false", *namespaces)


if __name__ == "__main__":
    main()
