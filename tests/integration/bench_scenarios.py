"""Two benchmark rounds as the monitor's Prometheus would hold them, for the bench tests.

`openmetrics(scenario, t0)` writes what a 60 s round looks like through the real exporters'
metric names and labels (node_exporter, process-exporter, Fabric's operations endpoint, and
Caliper 0.6.0's prometheus-push observer via the Pushgateway, including its counters
dropping to zero on the last push of a round), in the OpenMetrics text that
`promtool tsdb create-blocks-from openmetrics` backfills into a real Prometheus.
`report_html` and `manager_log` write what Caliper's manager leaves for the same round
(the report's structure follows Caliper 0.6.0's template: a summary table in
div#benchmarksummary, then one section per round).

    load-generator-bound: 400 TPS asked, 2 workers on a 2-vCPU VM send 252 TPS; the VM is
        97 % busy, each worker process burns ~0.98 cores, event-loop lag p99 ~0.25 s;
        the peer idles at 35 %.
    fabric-bound: 100 TPS asked and sent; the peer uses 93 % of its 2 vCPUs, commits ~70 TPS,
        transactions pile up in flight, latency climbs from 0.5 s to 3 s.

Run this module (`python tests/integration/bench_scenarios.py`) only to understand it; the
recordings under tests/data/bench/ are written by test_bench_prometheus.py when
FABPERF_RECORD=1.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from dataclasses import dataclass

from launch.render.caliper import LATENCY_BUCKETS

STEP = 5
ROUND_S = 60
BUCKETS = LATENCY_BUCKETS   # what launch's benchmark config asks the workers for
CALIPER_HOST, FABRIC_HOST, MONITOR_HOST = "caliper", "fabric", "monitor"
CALIPER_ADDR, FABRIC_ADDR = "10.77.0.11", "10.77.0.10"


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    requested: float
    send: float            # TPS the workers send
    commit: float          # TPS the peer commits (valid)
    worker_vm_busy: float  # 0..1
    worker_proc_cores: float
    lag_p99: float
    peer_cores: float      # of 2 vCPUs
    orderer_cores: float
    latency_start: float
    latency_end: float
    workers: int = 2
    lag_now: float | None = None   # instantaneous lag samples (default: lag_p99)
    round_index: int = 0
    first_finish_s: float = 0      # no finished counter pushed before this
    disk_busy: float = 0.08        # the Fabric VM's disk, share of time busy
    ledger_write: float = 0.01     # s/s the peer spends in block store commits (its state
    #                                database and the orderer's WAL: a third as much each)
    peer_down: tuple[float, float] | None = None   # seconds into the round: peer stopped
    failed: int = 0
    other_channel_commit: float = 0   # TPS another channel commits meanwhile
    cgroup: tuple[float, int] | None = None
    """the worker host is an nspawn container: (its cgroup's busy share, its cores) as the
    fabperf_cgroup_* series say (node_exporter then reports the whole host's CPUs)"""


SCENARIOS = {
    "load-generator-bound": Scenario("load-generator-bound", "overdrive", 400, 252, 252,
                                     0.97, 0.98, 0.25, 0.70, 0.15, 0.40, 0.45),
    "fabric-bound": Scenario("fabric-bound", "saturate", 100, 99.5, 70, 0.30, 0.28, 0.004,
                             1.86, 0.20, 0.5, 3.0),
    # a run's first round lags (instantaneous samples and the p99 since the worker started
    # at 0.4 s), its second is calm: the p99 gauge still says 0.4 s (prom-client 12 never
    # resets it), the samples 3 ms; nothing finishes in its first 10 s (latency 10 s), so
    # the finished counter has no series yet while in flight grows
    "lagging": Scenario("lagging", "lagging", 50, 50, 50, 0.40, 0.60, 0.4, 0.40, 0.10, 0.5,
                        0.5),
    # ... and its worker host is a container on a host busy with other things: node_exporter
    # says 95 %, the container's own cgroup 30 % of its 4 cores
    "calm": Scenario("calm", "calm", 50, 50, 50, 0.95, 0.25, 0.4, 0.40, 0.10, 10.0, 10.0,
                     lag_now=0.003, round_index=1, first_finish_s=10,
                     other_channel_commit=20, cgroup=(0.30, 4)),
    # issue 24's matrix: the Fabric container's writes throttled by blkio; node_exporter
    # sees an idle device (the throttle holds writes back before it), the peer's own
    # ledger commits take most of every second, the backlog grows
    "disk-throttled": Scenario("disk-throttled", "disk", 80, 80, 50, 0.40, 0.30, 0.01, 0.15,
                               0.05, 0.6, 6.0, disk_busy=0.02, ledger_write=0.7),
    # the live case of issue 20: a 60 s create round at 3 TPS, the peer stopped for 28 s
    # (from 20 s to 48 s): 84 succeeded, 98 failed; its ledger counter restarts from zero
    "peer-stopped": Scenario("peer-stopped", "create", 3, 3.0, 3.0, 0.35, 0.12, 0.208, 0.30,
                             0.05, 1.2, 1.2, workers=1, lag_now=0.012, peer_down=(20, 48),
                             failed=98),
}


def latency_at(s: Scenario, frac: float) -> float:
    return s.latency_start + (s.latency_end - s.latency_start) * frac


def _fmt(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def openmetrics(s: Scenario, t0: float) -> str:
    """OpenMetrics text: 60 s before, the 60 s round from t0, 60 s after; samples every 5 s."""
    fam: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))

    def put(name: str, labels: dict[str, str], t: float, v: float) -> None:
        fam[name][_fmt(labels)].append((t, v))

    times = [t0 - 60 + i * STEP for i in range((ROUND_S + 120) // STEP + 1)]
    node = {"job": "node", "environment": "local"}
    proc = {"job": "process", "environment": "local"}
    push = {"job": "caliper-workers", "environment": "local", "host": MONITOR_HOST,
            "role": "monitor", "instance": "", "roundLabel": s.label,
            "roundIndex": str(s.round_index)}
    acc: dict[str, float] = defaultdict(float)
    for t in times:
        in_round = t0 <= t <= t0 + ROUND_S
        frac = min(1.0, max(0.0, (t - t0) / ROUND_S))
        down = s.peer_down is not None and in_round and \
            s.peer_down[0] <= t - t0 < s.peer_down[1]
        if s.cgroup is not None:     # issue 23's contract: same host and role labels
            busy, cpus = s.cgroup
            acc["cgroup"] += (busy if in_round else 0.02) * cpus * STEP
            labels = {"job": "nspawn", "environment": "local", "host": CALIPER_HOST,
                      "role": "caliper"}
            put("fabperf_cgroup_cpu_seconds_total", labels, t, acc["cgroup"])
            put("fabperf_cgroup_cpus", labels, t, float(cpus))
        # the Fabric VM's disk: a share of each second busy
        acc["disk"] += (s.disk_busy if in_round else 0.01) * STEP
        for host, addr, role in ((CALIPER_HOST, CALIPER_ADDR, "caliper"),
                                 (FABRIC_HOST, FABRIC_ADDR, "orderer,peer")):
            put("node_disk_io_time_seconds_total", {**node, "host": host, "role": role,
                                                    "instance": f"{addr}:9100",
                                                    "device": "vda"}, t,
                acc["disk"] if host == FABRIC_HOST else 0.01 * (t - times[0]))
            put("node_disk_io_time_seconds_total", {**node, "host": host, "role": role,
                                                    "instance": f"{addr}:9100",
                                                    "device": "loop0"}, t, t - times[0])
        # the nodes' ledger write time (histogram sums, seconds), one series per channel
        for role, port, name, share in (
                ("peer", 9443, "ledger_blockstorage_commit_time_sum", 1.0),
                ("peer", 9443, "ledger_statedb_commit_time_sum", 1 / 3),
                ("orderer", 8443, "ledger_blockstorage_commit_time_sum", 1 / 3),
                ("orderer", 8443, "consensus_etcdraft_data_persist_duration_sum", 1 / 3)):
            key = f"write {role} {name}"
            acc[key] += (s.ledger_write if in_round else 0.002) * share * STEP
            if not (down and role == "peer"):
                put(name, {"job": "fabric", "environment": "local", "host": FABRIC_HOST,
                           "role": role, "instance": f"{FABRIC_ADDR}:{port}",
                           "channel": "mychannel"}, t, acc[key])
        # the peer's operations endpoint: down while the peer is stopped
        put("up", {"job": "fabric", "environment": "local", "host": FABRIC_HOST,
                   "role": "peer", "instance": f"{FABRIC_ADDR}:9443"}, t, 0.0 if down else 1.0)
        # node_exporter: 2 CPUs per VM, counters of idle/user seconds
        for host, addr, role, busy in (
                (CALIPER_HOST, CALIPER_ADDR, "caliper", s.worker_vm_busy if in_round else 0.03),
                (FABRIC_HOST, FABRIC_ADDR, "orderer,peer",
                 min(0.99, (s.peer_cores + s.orderer_cores) / 2) if in_round else 0.05)):
            for cpu in ("0", "1"):
                for mode, share in (("idle", 1 - busy), ("user", busy)):
                    key = f"cpu {host} {cpu} {mode}"
                    acc[key] += share * STEP
                    put("node_cpu_seconds_total", {**node, "host": host, "role": role,
                                                   "instance": f"{addr}:9100", "cpu": cpu,
                                                   "mode": mode}, t, acc[key])
        # process-exporter groups
        for host, addr, role, group, cores in (
                (CALIPER_HOST, CALIPER_ADDR, "caliper", "caliper",
                 s.worker_proc_cores * s.workers if in_round else 0.01),
                (FABRIC_HOST, FABRIC_ADDR, "orderer,peer", "peer",
                 s.peer_cores if in_round else 0.05),
                (FABRIC_HOST, FABRIC_ADDR, "orderer,peer", "orderer",
                 s.orderer_cores if in_round else 0.02)):
            key = f"proc {host} {group}"
            acc[key] += cores * STEP
            labels = {**proc, "host": host, "role": role, "instance": f"{addr}:9256",
                      "groupname": group}
            put("namedprocess_namegroup_cpu_seconds_total", {**labels, "mode": "user"}, t,
                acc[key])
            put("namedprocess_namegroup_num_procs", labels, t, s.workers if group == "caliper"
                else 1)
        # the peer's ledger: valid endorser transactions committed; a stopped peer is not
        # scraped, and its counter starts again from zero when it comes back
        ledger = {"job": "fabric", "environment": "local", "host": FABRIC_HOST, "role": "peer",
                  "instance": f"{FABRIC_ADDR}:9443", "chaincode": "fixed-asset:1.0",
                  "transaction_type": "ENDORSER_TRANSACTION"}
        if s.peer_down is not None and in_round and t - t0 >= s.peer_down[1] \
                and not acc["restarted"]:
            acc["restarted"], acc["ledger"] = 1, 0.0
        if in_round and t > t0 and not down:
            # commits of the 5 s up to t; in the first interval only after the first latency
            # (nothing commits sooner). After the restart the peer-stopped round commits
            # 2.84 TPS: 84 in all, what Caliper saw succeed
            seconds = STEP - min(STEP, s.latency_start) if t == t0 + STEP else STEP
            rate = 2.84 if s.peer_down and acc["restarted"] else s.commit
            acc["ledger"] += rate * seconds
            acc["other"] += s.other_channel_commit * STEP
        if not down:
            put("ledger_transaction_count", {**ledger, "channel": "mychannel",
                                             "validation_code": "VALID"}, t, acc["ledger"])
            put("ledger_transaction_count", {**ledger, "channel": "mychannel",
                                             "validation_code": "MVCC_READ_CONFLICT"}, t,
                2.0 if s.failed and t >= t0 + 10 and not acc["restarted"] else 0.0)
            if s.other_channel_commit:
                put("ledger_transaction_count", {**ledger, "channel": "otherchannel",
                                                 "validation_code": "VALID"}, t, acc["other"])
        # Caliper's pushed metrics, per worker: present from the round start; on the last
        # push (after the round) the registry has been reset: counters read 0.
        if t < t0:
            continue
        after = t > t0 + ROUND_S
        if t > t0 + ROUND_S + 10:
            continue    # the Pushgateway still has the group; keep the tail short
        for w in range(s.workers):
            lab = {**push, "workerIndex": str(w)}
            share = 1 / s.workers
            if not after:
                acc[f"sub{w}"] += s.send * share * STEP
                rate = 0.0 if t - t0 < s.first_finish_s else s.commit
                finished = min(acc[f"sub{w}"], acc[f"fin{w}"] + rate * share * STEP)
                # tx finish as fast as Fabric commits them
                done = finished - acc[f"fin{w}"]
                acc[f"fin{w}"] = finished
                lat = latency_at(s, frac)
                acc[f"lsum{w}"] += done * lat
                acc[f"lcnt{w}"] += done
                for le in BUCKETS:
                    # a narrow spread around the current latency
                    below = 0.5 * (1 + math.erf((le - lat) / (0.25 * lat * math.sqrt(2))))
                    acc[f"b{w}{le}"] += done * below
                acc[f"cpu{w}"] += s.worker_proc_cores * STEP
                vals = (acc[f"sub{w}"], acc[f"fin{w}"], acc[f"lsum{w}"], acc[f"lcnt{w}"])
            else:
                vals = (0.0, 0.0, 0.0, 0.0)
            put("caliper_tx_submitted", lab, t, vals[0])
            if t - t0 >= s.first_finish_s:     # prom-client: no series before the first
                put("caliper_tx_finished", {**lab, "final_status": "success"}, t, vals[1])
            put("caliper_tx_e2e_latency_sum", {**lab, "final_status": "success"}, t, vals[2])
            put("caliper_tx_e2e_latency_count", {**lab, "final_status": "success"}, t, vals[3])
            for le in (*BUCKETS, math.inf):
                v = 0.0 if after else (vals[3] if math.isinf(le) else acc[f"b{w}{le}"])
                put("caliper_tx_e2e_latency_bucket",
                    {**lab, "final_status": "success", "le": "+Inf" if math.isinf(le)
                     else f"{le:g}"}, t, v)
            put("process_cpu_seconds_total", lab, t, 0.0 if after else acc[f"cpu{w}"])
            put("nodejs_eventloop_lag_p99_seconds", lab, t, s.lag_p99)
            put("nodejs_eventloop_lag_seconds", lab, t,
                s.lag_p99 if s.lag_now is None else s.lag_now)
    lines = []
    for name in sorted(fam):
        lines.append(f"# TYPE {name} gauge")
        for labels, pts in fam[name].items():
            lines += [f"{name}{labels} {v:.6f} {ts:.3f}" for ts, v in pts]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def totals(s: Scenario) -> tuple[int, int, float, float, float]:
    """(succeeded, failed, send rate, throughput, avg latency) as Caliper would report."""
    if s.peer_down is not None:     # the live figures of issue 20
        return 84, s.failed, s.send, s.send, (s.latency_start + s.latency_end) / 2
    sent = int(s.send * ROUND_S)
    succ = min(sent, int(s.commit * ROUND_S))
    tail = (sent - succ) / s.commit if s.commit else 0
    succ = sent    # Caliper waits for every transaction of the round
    throughput = sent / (ROUND_S + tail + s.latency_end)
    avg = (s.latency_start + s.latency_end) / 2
    return succ, 0, s.send, throughput, avg


def report_html(rows: list[tuple[str, int, int, float, float, float, float, float]]) -> str:
    """A Caliper 0.6.0-shaped report.html for rows (label, succ, fail, send, max, min, avg,
    throughput)."""
    head = ("Name", "Succ", "Fail", "Send Rate (TPS)", "Max Latency (s)", "Min Latency (s)",
            "Avg Latency (s)", "Throughput (TPS)")

    def tr(cells: tuple, tag: str) -> str:
        return "<tr>\n" + "".join(f" <{tag}>{html.escape(str(c))}</{tag}>" for c in cells) \
            + "\n</tr>\n"

    def cells(r: tuple) -> tuple:
        return (r[0], r[1], r[2], f"{r[3]:.1f}", f"{r[4]:.2f}", f"{r[5]:.2f}", f"{r[6]:.2f}",
                f"{r[7]:.1f}")

    summary = "".join(tr(cells(r), "td") for r in rows)
    rounds = "".join(
        f'<div style="border-bottom: 1px solid #d9d9d9;" id="{html.escape(r[0])}">\n'
        f"<h2>Benchmark round: {html.escape(r[0])}</h2>\n<p>fabperf round</p>\n"
        f"<pre>{{&quot;label&quot;: &quot;{html.escape(r[0])}&quot;}}</pre>\n"
        f"<h3>Performance metrics for {html.escape(r[0])}</h3>\n"
        f'<table style="min-width: 100%;">\n{tr(head, "th")}{tr(cells(r), "td")}</table>\n'
        f"<h3>Resource utilization for {html.escape(r[0])}</h3>\n"
        "<h4>Resource monitor: prometheus</h4>\n<table><tr><table>\n"
        + tr(("Name", "CPU peer (%)"), "th") + tr(("10.77.0.10:9256", "93.1"), "td")
        + "</table></tr></table>\n</div>\n" for r in rows)
    return f"""<!doctype html>
<html>
<head><title>Hyperledger Caliper Report</title><meta charset="UTF-8"/></head>
<body>
<main>
<div class="left-column"><ul><h3>&nbspBasic information</h3>
<li>DLT: &nbsp<span>fabric</span></li><li>Name: &nbsp<span>fabperf-local</span></li></ul></div>
<div class="right-column">
<h1>Caliper report</h1>
<div style="border-bottom: 1px solid #d9d9d9; margin-bottom: 10px;" id="benchmarksummary">
<table style="min-width: 100%;">
<h3>Summary of performance metrics</h3>
{tr(head, "th")}{summary}</table>
</div>
{rounds}<div><h2>Test Environment</h2><pre id="benchmarkInfo">{{}}</pre></div>
</div>
</main>
</body>
</html>
"""


def manager_log(rounds: list[tuple[str, float, float, int, int]], workers: int,
                host: str = "caliper") -> str:
    """journalctl -o short-unix lines of a manager: rounds (label, start, seconds, succ, fail)."""
    out = []

    def line(t: float, msg: str) -> None:
        # Caliper 0.6.0's console format: timestamp, coloured padded level, label, module,
        # a tab (formats.align), the message
        module, _, text = msg.partition("] ")
        out.append(f"{t:.6f} {host} caliper[4242]: 2026.12.01-20:00:00.000 \x1b[32minfo\x1b[39m"
                   f"  [caliper] {module}] \t{text.strip()}")

    t = rounds[0][1] - 8 if rounds else 0
    line(t, f"[worker-orchestrator]   Waiting for {workers} workers to be connected...")
    line(t + 1, f"[worker-orchestrator]   {workers} workers connected, progressing to worker "
                "assignment phase.")
    line(t + 2, f"[worker-orchestrator]   {workers} workers ready, progressing to test "
                "preparation phase.")
    for i, (label, start, seconds, succ, fail) in enumerate(rounds):
        line(start - 3, f"[round-orchestrator]    Started round {i + 1} ({label})")
        line(start, "[round-orchestrator]    Monitors successfully started")
        for k in range(1, int(seconds // 5) + 1):
            sub = int(succ * k * 5 / seconds)
            line(start + 5 * k, f"[default-observer]      [{label} Round {i} Transaction Info] - "
                                f"Submitted: {sub} Succ: {max(0, sub - 40)} Fail:0 "
                                f"Unfinished:{min(sub, 40)}")
        line(start + seconds + 0.2, "[report]        ### Test result ###")
        line(start + seconds + 0.2, "[report]        ")
        cols = ["Name", "Succ", "Fail", "Send Rate (TPS)", "Max Latency (s)",
                "Min Latency (s)", "Avg Latency (s)", "Throughput (TPS)"]
        row = [label, str(succ), str(fail), f"{succ / seconds:.1f}", "3.10", "0.21", "1.52",
               f"{succ / (seconds + 3):.1f}"]
        for text in ("+" + "+".join("-" * (len(c) + 2) for c in cols) + "+",
                     "| " + " | ".join(cols) + " |",
                     "|" + "|".join("-" * (len(c) + 2) for c in cols) + "|",
                     "| " + " | ".join(row) + " |",
                     "+" + "+".join("-" * (len(c) + 2) for c in cols) + "+"):
            out.append(f"{start + seconds + 0.2:.6f} {host} caliper[4242]: {text}")
        line(start + seconds + 0.5, f"[round-orchestrator]    Finished round {i + 1} ({label}) "
                                    f"in {seconds:.3f} seconds")
    if rounds:
        last = rounds[-1]
        line(last[1] + last[2] + 2, "[round-orchestrator]    Benchmark finished in 70.2 seconds. "
                                    "Total rounds: 1. Successful rounds: 1. Failed rounds: 0.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(openmetrics(SCENARIOS["fabric-bound"], 1_800_000_000)[:2000])
