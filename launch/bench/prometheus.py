"""The monitor's Prometheus and Pushgateway over HTTP, and the PromQL `launch bench` asks.

A small client for the documented HTTP API (/api/v1/query, /api/v1/query_range, the admin
TSDB snapshot) and for the Pushgateway's group API; standard library only. The queries a
round needs are named in ROUND_QUERIES (instant, at the round's end, over the round
window) and RANGE_QUERIES (time series over the window, for plots and trends); the raw
answers are kept as they came (`RoundResponses`), so a recorded run can be judged again by
launch.bench.signals without a Prometheus.

Metric sources (tests/data/metric-names cites each): node_exporter and process-exporter on
every VM (labels host, role from file_sd), Fabric's operations endpoints (job fabric), the
Caliper workers' prometheus-push observer through the Pushgateway (job caliper-workers,
labels roundLabel, roundIndex, workerIndex, final_status).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fabkit.errors import ExternalError

SCRAPE_INTERVAL_S = 5            # packer/files/monitor/prometheus.yml global.scrape_interval
RATE_WINDOW = "15s"              # three scrapes: rate() of the range series
STEP_S = 5
CALIPER_JOB = "caliper-workers"  # the prometheus-push observer's job name (Caliper 0.6.0)

HISTOGRAM = "caliper_tx_e2e_latency"


@dataclass(frozen=True)
class Window:
    """A round's measured window (epoch seconds): from the manager's 'Monitors successfully
    started' to that plus the round's test duration."""

    start: float
    end: float

    @property
    def seconds(self) -> int:
        return max(1, int(math.floor(self.end - self.start)))


class Prometheus:
    """Prometheus' HTTP API at `url` (e.g. http://127.0.0.1:9090)."""

    def __init__(self, url: str, *, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, path: str, params: Mapping[str, Any] | None = None, *,
              method: str = "GET") -> Any:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items()})
        url = f"{self.url}{path}"
        data = None
        if method == "POST":
            data = query.encode()
        elif query:
            url = f"{url}?{query}"
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                doc = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:500]
            raise ExternalError(f"Prometheus {method} {url} failed: HTTP {exc.code}: {body}"
                                ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ExternalError(f"Prometheus {method} {url} failed: {exc}",
                                hint="is the monitor up (`launch status ENV`)?") from exc
        if doc.get("status") != "success":
            raise ExternalError(f"Prometheus {path} answered {doc.get('errorType')}: "
                                f"{doc.get('error')}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """An instant query; the raw `data` ({resultType, result})."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self._call("/api/v1/query", params, method="POST")

    def query_range(self, expr: str, start: float, end: float, step: float = STEP_S
                    ) -> dict[str, Any]:
        """A range query; the raw `data` ({resultType: matrix, result})."""
        return self._call("/api/v1/query_range",
                          {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                           "step": f"{step:g}"}, method="POST")

    def ready(self) -> bool:
        """Whether Prometheus answers (/-/ready)."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def snapshot(self) -> str:
        """A TSDB snapshot (needs --web.enable-admin-api, which the monitor image sets);
        returns its name: <storage>/snapshots/<name> on the monitor."""
        return str(self._call("/api/v1/admin/tsdb/snapshot", method="POST")["name"])


class Pushgateway:
    """The Pushgateway's HTTP API: list and delete the groups Caliper's workers pushed."""

    def __init__(self, url: str, *, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def groups(self, job: str = CALIPER_JOB) -> list[dict[str, str]]:
        """The grouping labels of every group of `job`."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/metrics",
                                        timeout=self.timeout) as resp:
                doc = json.loads(resp.read().decode())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ExternalError(f"Pushgateway {self.url}/api/v1/metrics failed: {exc}") from exc
        return [dict(g["labels"]) for g in doc.get("data", [])
                if g.get("labels", {}).get("job") == job]

    def delete_group(self, labels: Mapping[str, str]) -> None:
        """DELETE /metrics/job/<job>/<label>/<value>... (one group)."""
        path = "/metrics/job/" + urllib.parse.quote(labels["job"], safe="")
        for k, v in sorted(labels.items()):
            if k != "job":
                path += f"/{urllib.parse.quote(k, safe='')}/{urllib.parse.quote(v, safe='')}"
        req = urllib.request.Request(self.url + path, method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout):
                pass
        except (urllib.error.URLError, OSError) as exc:
            raise ExternalError(f"Pushgateway DELETE {self.url}{path} failed: {exc}") from exc

    def wipe(self, job: str = CALIPER_JOB) -> int:
        """Delete every group of `job` (an earlier run's counters would stay forever)."""
        groups = self.groups(job)
        for g in groups:
            self.delete_group(g)
        return len(groups)


# --- the PromQL --------------------------------------------------------------------------

def _caliper(round_index: int, extra: str = "") -> str:
    return f'job="{CALIPER_JOB}", roundIndex="{round_index}"' + (f", {extra}" if extra else "")


WORKER_ROLE = 'role=~"(.+,)?caliper(,.+)?"'
FABRIC_ROLE = 'role=~"(.+,)?(peer|orderer)(,.+)?"'
FABRIC_GROUPS = 'groupname=~"peer|orderer|chaincode"'
DISKS = 'device!~"(loop|ram|sr|fd|zram).*"'   # real block devices only


def cores(match: str = "") -> str:
    """vCPUs of each host: an nspawn container's fabperf_cgroup_cpus (its quota or cpuset,
    issue 23's contract) when present, else the count of its node_cpu idle series (inside
    a container those are the host's CPUs)."""
    sel = f", {match}" if match else ""
    return (f'(max by (host) (fabperf_cgroup_cpus{{{match}}}) or count by (host) '
            f'(node_cpu_seconds_total{{job="node", mode="idle"{sel}}}))')


def host_cpu(match: str, w: str) -> str:
    """Mean CPU busy (0..1) of each host over `w`: the container's cgroup CPU over its cores
    when fabperf_cgroup_* exist for the host (node_exporter in a container reports the
    host's CPUs), else 1 - node_exporter's idle share."""
    return (f"(sum by (host) (rate(fabperf_cgroup_cpu_seconds_total{{{match}}}[{w}])) / "
            f"max by (host) (fabperf_cgroup_cpus{{{match}}})) or "
            f'(1 - avg by (host) (rate(node_cpu_seconds_total{{job="node", mode="idle", '
            f"{match}}}[{w}])))")


CORES = cores()


def inflight(round_index: int) -> str:
    """Transactions in flight (submitted - finished) of a round. The finished counter has
    no series until a worker pushes its first finished transaction: `or vector(0)` gives the
    round its in-flight series from its start (with submitted alone it is still empty when
    no worker pushed anything: a missing signal, not a zero)."""
    c = _caliper(round_index)
    return (f"sum(caliper_tx_submitted{{{c}}}) - "
            f"(sum(caliper_tx_finished{{{c}}}) or vector(0))")


# the Fabric operations metrics (histogram sums, seconds) of a node's synchronous ledger writes
LEDGER_WRITES = ("ledger_blockstorage_commit_time_sum", "ledger_statedb_commit_time_sum",
                 "consensus_etcdraft_data_persist_duration_sum")


def ledger_write(w: str) -> str:
    """Seconds per second each node spent in LEDGER_WRITES over `w`. Each metric is summed
    on its own and tagged with its name before the sum of them: rate() drops the metric
    name, and a node's metrics differ by nothing else (Prometheus refuses such a vector)."""
    parts = " or ".join(
        f'label_replace(sum by (host, role) (rate({m}{{job="fabric"}}[{w}])), "part", "{m}", '
        '"", "")' for m in LEDGER_WRITES)
    return f"sum by (host, role) ({parts})"


def round_queries(round_index: int, w: str) -> dict[str, str]:
    """Instant queries evaluated at the round's end over its window `w` (e.g. "30s")."""
    c = _caliper(round_index)
    ok = _caliper(round_index, 'final_status="success"')
    return {
        # mean CPU busy of each worker VM over the round (its container's, under nspawn)
        "worker_vm_cpu": host_cpu(WORKER_ROLE, w),
        "worker_vm_cores": cores(WORKER_ROLE),
        # each worker process's own CPU (pushed, prom-client default metrics), in cores:
        # the busiest one is judged against the one core a Node.js process can use
        "worker_process_cpu": f"sum by (workerIndex) (rate(process_cpu_seconds_total{{{c}}}[{w}]))",
        # each worker's event-loop lag in this round only: the median of the instantaneous
        # samples it pushed inside the window (prom-client's nodejs_eventloop_lag_seconds,
        # one setImmediate delay per collect). Not the nodejs_eventloop_lag_p99_seconds
        # gauge: prom-client 12 never resets the histogram behind it, so it is the p99 since
        # the worker started and one lagging round makes every later round of the run look
        # lagging; its change cannot be taken either (only quantiles are pushed, no counts).
        # The median: one garbage-collection pause among a round's samples is no lag.
        "eventloop_lag_samples": f"max by (workerIndex) (quantile_over_time(0.5, "
                                 f"nodejs_eventloop_lag_seconds{{{c}}}[{w}]))",
        # peer / orderer / chaincode process CPU as a share of the VM's vCPUs
        "fabric_cpu": f'sum by (host, groupname) (rate(namedprocess_namegroup_cpu_seconds_total'
                      f'{{job="process", {FABRIC_GROUPS}}}[{w}])) / on (host) group_left() {CORES}',
        # each Fabric node's own process CPU in cores, from its operations endpoint (the
        # Prometheus Go client's process collector behind /metrics); a BYOF endpoint with a
        # `cpus` label stands in for process-exporter, which does not run on the user's hosts
        "fabric_process_cpu": f'sum by (host, role, cpus) (rate(process_cpu_seconds_total'
                              f'{{job="fabric"}}[{w}]))',
        # the peer and orderer VMs as a whole (what the process groups do not see:
        # the kernel, the state database, the exporters)
        "fabric_vm_cpu": host_cpu(FABRIC_ROLE, w),
        # the busiest block device of each peer / orderer VM, share of the round busy
        "disk_busy": f'max by (host) (rate(node_disk_io_time_seconds_total{{job="node", '
                     f"{FABRIC_ROLE}, {DISKS}}}[{w}]))",
        # seconds per second each Fabric node spent writing its ledger (the block store's
        # commits, the peer's state database commits, the orderer's Raft WAL persists):
        # what a slow or throttled disk costs, seen from inside the node (node_exporter in
        # a container reads the host's diskstats, and a blkio throttle holds writes back
        # before the device, which stays idle)
        "ledger_write": ledger_write(w),
        # the monitor's own scrapes of itself in the round (one every SCRAPE_INTERVAL_S):
        # fewer than the window holds means Prometheus was stopped, restarted or stalled
        # during the round, and every series it gives for the round has a hole
        "monitor_scrapes": f'min(count_over_time(up{{job="prometheus"}}[{w}]))',
        # scrapes of each Fabric operations endpoint that failed in the round (a stopped
        # or hung node): seconds down = this x the scrape interval
        "fabric_down": f'sum by (host, role) (count_over_time(up{{job="fabric"}}[{w}]) - '
                       f'sum_over_time(up{{job="fabric"}}[{w}]))',
        **{f"latency_p{int(q * 100)}": f"histogram_quantile({q}, sum by (le) "
                                        f"(increase({HISTOGRAM}_bucket{{{ok}}}[{w}])))"
           for q in (0.5, 0.95, 0.99)},
        "latency_buckets": f"sum by (le) (increase({HISTOGRAM}_bucket{{{ok}}}[{w}]))",
    }


LEDGER_QUERY = ('sum by (host, channel) (ledger_transaction_count{job="fabric", '
                'validation_code="VALID", transaction_type="ENDORSER_TRANSACTION"})')
"""(bundles recorded before ledger_samples: the count at the two window edges)"""


def ledger_samples_query(seconds: int) -> str:
    """Every raw sample of the peers' transaction counters (all channels, all validation
    codes) in the `seconds` before the evaluation time: launch.bench.ledger sums each
    series' increase itself, across a reset when a peer restarted, from the last sample at
    or before the round's start, leaving out a preparation that committed just before the
    start but was scraped after it."""
    return (f'ledger_transaction_count{{job="fabric", '
            f'transaction_type="ENDORSER_TRANSACTION"}}[{seconds}s]')


def range_queries(round_index: int, channel: str | None = None) -> dict[str, str]:
    """Series over the round window (step STEP_S), for plots and trends. `channel`: the
    round's channel, whose commits alone are the round's (None: unknown, every channel)."""
    c = _caliper(round_index)
    on = f', channel="{channel}"' if channel else ""
    ok = _caliper(round_index, 'final_status="success"')
    r = RATE_WINDOW
    return {
        "send_rate": f"sum(rate(caliper_tx_submitted{{{c}}}[{r}]))",
        "finish_rate": f"sum by (final_status) (rate(caliper_tx_finished{{{c}}}[{r}]))",
        "committed_rate": f'max(sum by (host) (rate(ledger_transaction_count{{job="fabric", '
                          f'validation_code="VALID"{on}}}[{r}])))',
        "inflight": inflight(round_index),
        "latency_avg": f"sum(rate({HISTOGRAM}_sum{{{ok}}}[{r}])) / "
                       f"sum(rate({HISTOGRAM}_count{{{ok}}}[{r}]))",
        **{f"latency_p{int(q * 100)}": f"histogram_quantile({q}, sum by (le) "
                                        f"(rate({HISTOGRAM}_bucket{{{ok}}}[{r}])))"
           for q in (0.5, 0.95, 0.99)},
        "cpu_by_group": f'sum by (host, groupname) (rate(namedprocess_namegroup_cpu_seconds_total'
                        f'{{job="process", groupname=~"peer|orderer|chaincode|caliper"}}[{r}]))'
                        f" / on (host) group_left() {CORES}",
        # what the verdict's CPU rules read, over time (plots/cpu.png)
        "worker_vm_cpu": host_cpu(WORKER_ROLE, r),
        "worker_process_cpu": f"sum by (workerIndex) (rate(process_cpu_seconds_total{{{c}}}[{r}]))",
        "fabric_vm_cpu": host_cpu(FABRIC_ROLE, r),
    }


@dataclass(frozen=True)
class RoundResponses:
    """Prometheus' raw answers for one round: what signals.from_responses reads, and what a
    results bundle keeps (prometheus/round-<i>.json) so the verdict can be re-run."""

    window: Window
    round_index: int
    instant: Mapping[str, Any]        # name -> data of an instant query
    ranges: Mapping[str, Any]         # name -> data of a range query
    ledger_before: Any                # LEDGER_QUERY at the window start (older bundles)
    ledger_after: Any                 # LEDGER_QUERY after the window (older bundles)
    queries: Mapping[str, str]        # name -> the PromQL asked
    ledger_samples: Any = None        # ledger_samples_query over the window and its margin
    ledger_at: float | None = None    # when ledger_samples was evaluated

    def to_json(self) -> dict[str, Any]:
        return {"window": {"start": self.window.start, "end": self.window.end},
                "round_index": self.round_index, "instant": dict(self.instant),
                "ranges": dict(self.ranges), "ledger_before": self.ledger_before,
                "ledger_after": self.ledger_after, "ledger_samples": self.ledger_samples,
                "ledger_at": self.ledger_at, "queries": dict(self.queries)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RoundResponses:
        w = doc["window"]
        return cls(Window(float(w["start"]), float(w["end"])), int(doc["round_index"]),
                   doc["instant"], doc["ranges"], doc.get("ledger_before"),
                   doc.get("ledger_after"), doc.get("queries", {}),
                   doc.get("ledger_samples"), doc.get("ledger_at"))


def fetch_round(prom: Prometheus, window: Window, round_index: int, *,
                ledger_until: float | None = None, channel: str | None = None
                ) -> RoundResponses:
    """Ask every query of a round. `ledger_until`: when to read the ledger count after the
    round (default: two scrapes after its end, so the last commits are scraped); `channel`:
    the round's (range_queries)."""
    w = f"{window.seconds}s"
    instant = round_queries(round_index, w)
    ranges = range_queries(round_index, channel)
    after = ledger_until if ledger_until is not None else window.end + 2 * SCRAPE_INTERVAL_S
    # from two scrapes before the start: the last sample at or before it is in the range
    samples = ledger_samples_query(int(math.ceil(after - window.start))
                                   + 2 * SCRAPE_INTERVAL_S)
    return RoundResponses(
        window=window, round_index=round_index,
        instant={k: prom.query(q, window.end) for k, q in instant.items()},
        ranges={k: prom.query_range(q, window.start, window.end) for k, q in ranges.items()},
        ledger_before=prom.query(LEDGER_QUERY, window.start),
        ledger_after=prom.query(LEDGER_QUERY, after),
        queries={**{f"instant.{k}": q for k, q in instant.items()},
                 **{f"range.{k}": q for k, q in ranges.items()}, "ledger": LEDGER_QUERY,
                 "ledger_samples": samples},
        ledger_samples=prom.query(samples, after), ledger_at=after,
    )
