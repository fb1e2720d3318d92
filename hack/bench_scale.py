"""`make bench`'s scale section (BENCH_ONLY=scale): one operator with N jobs
and N/10 Destinations, figures only.

SCALE_N (100000) jobs of 1 KiB payload, created through the REST API
(`kubectl create`): 90% delivered by the operator, 10% scheduled an hour
ahead; N/10 Destinations, each with a bearer-token Secret of its own. It
prints:
- memory: RSS per finished job at a tenth of the delivered jobs and at all
  of them, per scheduled job, per Destination, each (RSS - RSS before) / n;
  scheduled jobs and Destinations also per half, since the first burst
  grows maps that keep their capacity and the second shows the cost of
  each one held;
- idle: API requests, Secret reads and CPU of a quiet minute, against a
  quiet minute with no operator running (the API server's own traffic);
- start-up: process start to the first call of a job already due, against
  a bare paged list of the same jobs (examples/list_rate) in the same run;
- a job to one of the Destinations: apply to first call, against raw-URL
  jobs to the same server.
Called by hack/bench.py with itself as `b`, for its helpers.
"""

import json
import os
import random
import re
import subprocess
import time

N = int(os.environ.get("SCALE_N", 100000))
IDLE_SECONDS = int(os.environ.get("SCALE_IDLE_SECONDS", 60))
MIB = 1024 * 1024


def api_requests(b):
    """The API server's request counts by (verb, resource), resources only."""
    counts = {}
    for line in b.kubectl("get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("resource"):
                key = (labels["verb"], labels["resource"])
                counts[key] = counts.get(key, 0.0) + float(line.split()[-1])
    return counts


def quiet_minute(b, pid=None, operator=None):
    """Requests by kind over IDLE_SECONDS, and the CPU seconds of `pid`."""
    cpu = lambda: sum(int(v) for v in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13]) / os.sysconf("SC_CLK_TCK")
    before, cpu_before = api_requests(b), cpu() if pid else 0.0
    secret_reads = operator.metric("pendingjob_credential_reads_total") if operator else 0.0
    time.sleep(IDLE_SECONDS)
    after, cpu_after = api_requests(b), cpu() if pid else 0.0
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}
    writes = sum(v for (verb, _), v in delta.items() if verb not in ("GET", "LIST", "WATCH"))
    reads = sum(v for (verb, _), v in delta.items() if verb in ("GET", "LIST"))
    secret_reads = (operator.metric("pendingjob_credential_reads_total") - secret_reads) if operator else 0.0
    return {"writes": writes, "reads": reads, "cpu": cpu_after - cpu_before, "by": delta,
            "secret_reads": secret_reads}


def scheduled_job(name, url, at):
    job = {"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": name},
           "spec": {"target": {"url": url, "timeoutSeconds": 10}, "notBefore": at,
                    "payload": {"name": name, "filler": "x" * 1024}}}
    return job


def create_in_steps(b, ns, make, count, step=10000):
    for start in range(0, count, step):
        b.create(ns, [make(n) for n in range(start, min(count, start + step))])


def settle(b, ns, what):
    """Waits until no job in `ns` has been written for 5 s."""
    def quiet():
        before = b.apiserver_writes()["pendingjobs"]
        time.sleep(5)
        return b.apiserver_writes()["pendingjobs"] == before
    b.wait(what, 900, quiet, every=0)


def first_calls(b, proxy, ns, api2, bodies):
    """Apply -> first call (ms) of each job in `bodies`, one at a time."""
    samples = []
    for body in bodies:
        sent = time.time() * 1000
        uid = proxy.create_job(ns, body)
        first = b.wait("a first call", 30, lambda: next(
            (r["atMs"] for r in api2.stats()["requests"] if r["key"] == uid), None), every=0.01)
        samples.append(first - sent)
    return samples


def status_mib(pid, field):
    """A memory line of /proc/PID/status (VmRSS, VmHWM: the peak), in MiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(b):
    later, destinations = N // 10, N // 10
    delivered = N - later
    api2 = b.Api2("api2-scale")
    targets = b.Api2("api2-scale-destinations")
    ns = b.namespace("scale")
    operator = b.Operator(ns, *b.DRAIN_CALLS)
    time.sleep(2)
    idle_rss = operator.rss_mib()
    print(f"scale: {N} jobs ({delivered} delivered, {later} an hour ahead), {destinations} Destinations; "
          f"operator idle RSS {idle_rss:.1f} MiB")

    # Finished jobs: a tenth, then all.
    done_job = lambda n: b.job(f"done-{n}", api2.url, 1024)
    tenth = delivered // 9
    rows = []
    started = time.time()
    for upto in (tenth, delivered):
        have = rows[-1][0] if rows else 0
        create_in_steps(b, ns, lambda n: done_job(have + n), upto - have)
        b.wait(f"{upto} jobs to succeed", 1800, lambda: operator.succeeded() >= upto, every=1)
        settle(b, ns, "the delivered jobs' writes to end")
        rows.append((upto, operator.rss_mib()))
    drain_peak = status_mib(operator.child.pid, "VmHWM")
    for count, rss in rows:
        print(f"memory: {count} finished jobs: RSS {rss:.1f} MiB, {(rss - idle_rss) * MIB / count:.0f} bytes each")
    print(f"memory: {delivered} delivered in {time.time() - started:.0f} s (created as they went), "
          f"peak RSS {drain_peak:.1f} MiB")

    # Unfinished: scheduled an hour ahead, each shown as scheduled once. In
    # two halves: the first burst also grows the controller's queue and cache
    # maps, which keep their capacity; the second, as large, needs no more,
    # so it shows what each job held costs.
    before = operator.rss_mib()
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    payload = len(json.dumps({"name": "later-00000", "filler": "x" * 1024}, separators=(",", ":")))
    halves = []
    for first, end in ((0, later // 2), (later // 2, later)):
        start = operator.rss_mib()
        b.create(ns, [scheduled_job(f"later-{n}", api2.url, at) for n in range(first, end)])
        settle(b, ns, "the scheduled jobs' writes to end")
        halves.append((operator.rss_mib() - start) * MIB / (end - first))
    rss = operator.rss_mib()
    per = (rss - before) * MIB / later
    print(f"memory: {later} jobs an hour ahead: +{rss - before:.1f} MiB, {per:.0f} bytes each, "
          f"{per - payload:.0f} beside their {payload}-byte payload; first half {halves[0] - payload:.0f}, "
          f"second half {halves[1] - payload:.0f} beside it")

    # Destinations, each with a Secret of its own.
    before = operator.rss_mib()
    started = time.time()
    secrets = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"token-{n}"},
                "stringData": {"token": f"tok-{n}-{random.getrandbits(64):016x}"}} for n in range(destinations)]
    ready = lambda: b.kubectl("get", "destinations", "-n", ns, "-o", "jsonpath={range .items[*]}"
                              "{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}").count("True")
    # In two halves too, for the same reason.
    halves_d = []
    for first, end in ((0, destinations // 2), (destinations // 2, destinations)):
        start = operator.rss_mib()
        b.create(ns, secrets[first:end])
        b.create(ns, [{"apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination", "metadata": {"name": f"partner-{n}"},
                       "spec": {"url": targets.base,
                                "auth": {"bearerToken": {"secretKeyRef": {"name": f"token-{n}", "key": "token"}}}}}
                      for n in range(first, end)])
        b.wait(f"{end} Destinations to be Ready", 1800, lambda: ready() >= end, every=5)
        settle(b, ns, "the Destinations' writes to end")
        time.sleep(5)
        halves_d.append((operator.rss_mib() - start) * MIB / (end - first))
    settling = time.time() - started
    rss = operator.rss_mib()
    print(f"memory: {destinations} Destinations with Secrets: +{rss - before:.1f} MiB, "
          f"{(rss - before) * MIB / destinations:.0f} bytes each (first half {halves_d[0]:.0f}, second half "
          f"{halves_d[1]:.0f}); all Ready {settling:.0f} s after the first create")
    print(f"memory: model: {idle_rss:.0f} MiB + {(rows[-1][1] - idle_rss) * MIB / delivered:.0f} B per finished job "
          f"+ {per:.0f} B per unfinished job (1 KiB payload) + {(rss - before) * MIB / destinations:.0f} B per "
          f"Destination; {rss:.1f} MiB in all here")

    proxy = b.Proxy()
    to_destination = [{"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
                       "metadata": {"name": f"probe-dest-{n}"},
                       "spec": {"destinationRef": {"name": f"partner-{random.randrange(destinations)}"},
                                "target": {"path": "/api2/simulate"}, "payload": {"n": n}}} for n in range(20)]
    raw = [b.job(f"probe-raw-{n}", f"{targets.base}/api2/simulate") for n in range(20)]
    probes = len(raw) + len(to_destination)
    raw_ms, dest_ms = first_calls(b, proxy, ns, targets, raw), first_calls(b, proxy, ns, targets, to_destination)
    print(f"destinations: apply -> first call to a random one of {destinations} idle Destinations p50 "
          f"{b.pct(dest_ms, 50):.0f} ms (max {max(dest_ms):.0f}), raw URL to the same server p50 "
          f"{b.pct(raw_ms, 50):.0f} ms (max {max(raw_ms):.0f}): ratio {b.pct(dest_ms, 50) / b.pct(raw_ms, 50):.2f}")
    b.stop(proxy.child)
    settle(b, ns, "the probes' writes to end")

    idle = quiet_minute(b, operator.child.pid, operator)
    rss_after = operator.rss_mib()
    print(f"memory: after the quiet minute (Secret values past their 30 s swept): RSS {rss_after:.1f} MiB, "
          f"{(rss_after - before) * MIB / destinations:.0f} bytes per Destination")
    b.stop(operator.child)
    baseline = quiet_minute(b)
    # What the operator touches; the API server's own watches restart too.
    ours = ("pendingjobs", "destinations", "secrets", "configmaps", "events", "leases")
    busy = {f"{verb} {resource}": int(v) for (verb, resource), v in idle["by"].items()
            if resource in ours and v > baseline["by"].get((verb, resource), 0.0)}
    print(f"idle: {IDLE_SECONDS} s with {delivered} finished, {later} scheduled, {destinations} ready Destinations: "
          f"{idle['writes']:.0f} API writes and {idle['reads']:.0f} reads ({idle['reads'] / IDLE_SECONDS:.2f}/s) "
          f"against {baseline['writes']:.0f} and {baseline['reads']:.0f} with no operator (the API server's own); "
          f"above that, of what the operator touches: {busy or 'none'}; {idle['secret_reads']:.0f} Secret reads; operator CPU "
          f"{100 * idle['cpu'] / IDLE_SECONDS:.2f}% of a core")

    # Start-up: one job already due, created while no operator runs.
    due = b.Api2("api2-scale-due")
    b.create(ns, [b.job("due-now", due.url)])
    listed = subprocess.run([f"{b.BIN}/examples/list_rate", ns], capture_output=True, text=True, check=True).stdout
    list_seconds = float(re.search(r"in ([\d.]+) s", listed).group(1))
    started = time.time()
    child = b.start("operator-scale-restart", f"{b.BIN}/pendingjob-operator", "run", "--namespace", ns,
                    "--admin-listen", "127.0.0.1:0", "--leader-election=false", *b.DRAIN_CALLS)
    b.wait("the due job's first call", 900, lambda: due.stats()["totalRequests"] >= 1, every=0.05)
    first = time.time() - started
    time.sleep(5)
    rss, peak = status_mib(child.pid, "VmRSS"), status_mib(child.pid, "VmHWM")
    b.stop(child)
    print(f"start-up: process start to the first call of a job already due {first:.1f} s with {N + probes + 1} jobs; "
          f"a bare paged list of them {list_seconds:.1f} s ({listed.strip()}): ratio {first / list_seconds:.2f}; "
          f"RSS {rss:.1f} MiB 5 s after, {peak:.1f} MiB at most")
