"""The results bundle of a benchmark run: results/<env>/<UTC stamp>/.

    summary.json     the Summary below (schema SCHEMA): per round numbers, ledger
                     cross-check, verdict + evidence
    index.html       the summary table and the plots, readable without Grafana
    report.html      Caliper's own report (absent when the run was interrupted before
                     Caliper wrote it; summary.json then says so)
    plots/*.png      launch.bench.plots
    prometheus/      snapshot.tar.gz (the monitor's TSDB snapshot, admin API) and
                     round-<i>.json (the raw answers the verdict read: re-judge offline)
    configs/         benchmark.yaml, networkconfig-<host>.yaml (private keys removed),
                     caliper.yaml, spec, plan.json
    versions.json    images and fingerprints, Fabric commit and Go, Caliper, Node, fabperf
    logs/            manager, workers, bootstrap

The bundle is written into a hidden staging directory next to it and renamed into place
at the end: an interrupted write never leaves a half bundle under its final name. Before
the rename every file is scanned for private keys; one found is an error and the bundle is
not published.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fabkit import inputs
from fabkit.errors import ExternalError, InputError
from fabkit.inputs import Rule, check_fields, check_value
from launch.bench import report
from launch.bench.verdict import Verdict

SCHEMA = "fabperf.bench.summary/1"
SUMMARY = "summary.json"
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
STAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")


# --- the schema ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Latency:
    """Latency of successful transactions, seconds. avg/min/max: Caliper's report;
    p50/p95/p99: Prometheus (see Summary.percentile_source); None when not available."""

    avg: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True)
class RoundSummary:
    """One round of a run."""

    index: int
    """0-based position in the benchmark (Caliper's roundIndex)."""
    label: str
    workload: str
    """the workload module (workloads/create-asset.js ...)"""
    requested_tps: float | None
    """the fixed-rate total across all workers; None for other rate controllers"""
    rate_control: Mapping[str, Any]
    status: str
    """completed | failed (Caliper's 'Failed round') | interrupted | missing"""
    send_rate_tps: float | None
    """Caliper's Send Rate: (succ + fail) / submit span (failures included)"""
    throughput_tps: float | None
    """Caliper's Throughput: (succ + fail) / (last finish - first submit). It COUNTS FAILED
    TRANSACTIONS: read goodput_tps for what succeeded"""
    succeeded: int
    failed: int
    latency: Latency
    window: Mapping[str, float] | None
    """{start, end, seconds}: epoch seconds of the round's transactions (manager log)"""
    ledger: Mapping[str, Any]
    """launch.bench.ledger.LedgerCheck.to_json(): channel, committed (most on a peer of the
    round's channel), committed_min, succeeded, per_peer, difference, flagged (> tolerance,
    peers disagreeing, a read-only round that committed), applicable, note, resets,
    invalid_by_code, other_channels, read_only, skipped (why it was not checked)"""
    verdict: Mapping[str, Any]
    """launch.bench.verdict.RoundVerdict.to_json(): verdict (failing | load-generator-bound |
    fabric-bound | headroom | inconclusive), summary, evidence (the checks that fired),
    checks (all, with value, threshold, where, missing), missing_data (rules without
    data), missing (rule -> what is missing and where it should have come from),
    failures (reasons, by validation code, unreachable nodes)"""
    source: str
    """where the counts came from: report.html, or the manager log when Caliper did not get
    to write its report"""
    error: str = ""
    goodput_tps: float | None = None
    """succeeded / window seconds: the throughput of what succeeded (None: no window or no
    counts; bundles before it: compute it so)"""
    ledger_goodput_tps: float | None = None
    """VALID transactions the round's channel committed (ledger.committed) / window seconds
    (None: the ledger check was skipped, or a read-only round)"""
    channel: str | None = None
    """the channel of the round's contract (None: unknown)"""

    def goodput(self) -> float | None:
        """goodput_tps, or succeeded / window seconds for bundles written before it."""
        if self.goodput_tps is not None:
            return self.goodput_tps
        seconds = (self.window or {}).get("seconds")
        # not rounded: comparisons take medians and intervals of it
        return self.succeeded / seconds if seconds and self.status == "completed" else None


@dataclass(frozen=True)
class Summary:
    """summary.json."""

    environment: str
    stamp: str
    """the bundle's directory name, UTC, %Y%m%dT%H%M%SZ"""
    status: str
    """complete | interrupted (Ctrl-C: what was measured is kept) | failed"""
    started_at: str
    finished_at: str
    rounds: tuple[RoundSummary, ...]
    thresholds: Mapping[str, float]
    caliper: Mapping[str, Any]
    """workers (all processes), worker_vms [{host, processes, gateway, msp_id}],
    manager_host, version"""
    percentile_source: str
    timings: Mapping[str, float] = field(default_factory=dict)
    """seconds: to_first_tx (from `launch bench` to the first round's start), rounds,
    last_tx_to_bundle (from the last round's end to the bundle written)"""
    notes: tuple[str, ...] = ()
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any, where: str = SUMMARY) -> Summary:
        """A Summary from a parsed summary.json, every field checked (types, ranges, the
        verdict values) so that the views never meet a string where a number belongs."""
        if not isinstance(doc, Mapping) or doc.get("schema") != SCHEMA:
            found = doc.get("schema") if isinstance(doc, Mapping) else doc
            raise InputError.field(where, "schema", SCHEMA, found)
        top = _checked(doc, SUMMARY_RULES, cls, where, "")
        rounds = []
        for i, r in enumerate(top["rounds"]):
            path = f"rounds[{i}]"
            rd = _checked(r, ROUND_RULES, RoundSummary, where, path)
            lat = _checked(rd["latency"], LATENCY_RULES, Latency, where, f"{path}.latency")
            if rd["window"] is not None:
                check_fields(rd["window"], WINDOW_RULES, source=where, path=f"{path}.window")
            _check_present(rd["ledger"], LEDGER_RULES, where, f"{path}.ledger")
            _check_present(rd["verdict"], VERDICT_RULES, where, f"{path}.verdict")
            for key in ("evidence", "checks"):
                for j, c in enumerate(rd["verdict"].get(key) or ()):
                    _check_present(c, CHECK_RULES, where, f"{path}.verdict.{key}[{j}]")
            rounds.append(RoundSummary(**{**rd, "latency": Latency(**lat)}))
        _check_present(top["caliper"], CALIPER_RULES, where, "caliper")
        for name, rules in (("thresholds", top["thresholds"]), ("timings", top["timings"])):
            for key, value in rules.items():
                check_value(value, Rule(str(key), (int, float), minimum=0), source=where,
                            path=f"{name}.{key}")
        for i, note in enumerate(top["notes"]):
            check_value(note, Rule("note", str), source=where, path=f"notes[{i}]")
        return cls(**{**top, "rounds": tuple(rounds), "notes": tuple(top["notes"])})


# --- the schema's field rules (bake.inputs): what from_json accepts -----------------------

MAX_SUMMARY_BYTES = 16 * 2**20
"""summary.json holds numbers and the verdicts' evidence: a few kilobytes per round"""
MAX_SUMMARY_ROUNDS = 1000
NO_VERDICT = "-"
"""the verdict of a round that was interrupted before it could be judged"""
JUDGEMENTS = tuple(v.value for v in Verdict)
VERDICTS = (*JUDGEMENTS, NO_VERDICT)
_NUM = (int, float)


def _num(name: str, *, minimum: float | None = 0) -> Rule:
    return Rule(name, _NUM, default=None, minimum=minimum)


SUMMARY_RULES = (
    Rule("schema", str), Rule("environment", str), Rule("stamp", str),
    Rule("status", str), Rule("started_at", str), Rule("finished_at", str),
    Rule("rounds", list), Rule("thresholds", dict, default={}),
    Rule("caliper", dict, default={}), Rule("percentile_source", str, default=""),
    Rule("timings", dict, default={}), Rule("notes", list, default=[]),
)
ROUND_RULES = (
    Rule("index", int, minimum=0, maximum=MAX_SUMMARY_ROUNDS), Rule("label", str),
    Rule("workload", str, default=""), _num("requested_tps"),
    Rule("rate_control", dict, default={}), Rule("status", str),
    _num("send_rate_tps"), _num("throughput_tps"), _num("goodput_tps"),
    _num("ledger_goodput_tps"), Rule("succeeded", int, minimum=0),
    Rule("failed", int, minimum=0), Rule("latency", dict, default={}),
    Rule("window", dict, default=None), Rule("ledger", dict, default={}),
    Rule("verdict", dict, default={}), Rule("source", str, default=""),
    Rule("error", str, default=""),
)
LATENCY_RULES = tuple(_num(n) for n in ("avg", "min", "max", "p50", "p95", "p99"))
WINDOW_RULES = (_num("start"), _num("end"), _num("seconds"))
LEDGER_RULES = (Rule("applicable", bool), Rule("flagged", bool), _num("committed"),
                _num("succeeded"), _num("difference", minimum=None), Rule("note", str),
                Rule("per_peer", dict))
VERDICT_RULES = (Rule("verdict", str, choices=VERDICTS), Rule("summary", str),
                 Rule("evidence", list), Rule("checks", list), Rule("missing_data", list))
CHECK_RULES = (Rule("detail", str), Rule("rule", str), Rule("where", str),
               _num("value", minimum=None), _num("threshold", minimum=None))
CALIPER_RULES = (Rule("workers", int, minimum=0), Rule("worker_vms", list),
                 Rule("manager_host", str))


def _checked(doc: Any, rules: Sequence[Rule], kind: type, where: str,
             path: str) -> dict[str, Any]:
    """check_fields over ``rules``; a field of the dataclass ``kind`` without a rule of its
    own (added by a newer fabperf) passes unchecked, any other key is refused."""
    if not isinstance(doc, Mapping):
        raise InputError.field(where, path or "(top level)", "a mapping", doc)
    ruled = {r.name for r in rules}
    extra = {k: v for k, v in doc.items() if k in {f.name for f in fields(kind)} - ruled}
    rest = {k: v for k, v in doc.items() if k not in extra}
    return {**check_fields(rest, rules, source=where, path=path), **extra}


def _check_present(doc: Any, rules: Sequence[Rule], where: str, path: str) -> None:
    """The keys of a free-form mapping (evidence) that the views read, where present."""
    if not isinstance(doc, Mapping):
        raise InputError.field(where, path, "a mapping", doc)
    for rule in rules:
        value = doc.get(rule.name)
        if value is not None:
            check_value(value, rule, source=where, path=f"{path}.{rule.name}")


# --- text views (shared by the CLI and index.html) ---------------------------------------

TABLE_HEAD = ("round", "req TPS", "send TPS", "goodput TPS", "ledger goodput TPS",
              "throughput TPS (incl. failed)", "succ", "fail", "avg s (Caliper)",
              "p50 s (Prom.)", "p95 s (Prom.)", "p99 s (Prom.)", "max s (Caliper)", "ledger",
              "verdict")
TABLE_NOTE = ("goodput = succeeded / window; ledger goodput = valid transactions the peers "
              "of the round's channel committed / window; Caliper's throughput counts failed "
              "transactions. avg and max are Caliper's exact figures; p50/p95/p99 are "
              "interpolated in Prometheus' histogram buckets (a p99 above the max is that "
              "interpolation).")


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def tps_text(v: float | None) -> str:
    """A TPS figure as the tables show it ('-' when unknown)."""
    return _f(v, "{:.1f}")


def ledger_text(ledger: Mapping[str, Any]) -> str:
    """'1500 ok', '1420 (5.3% off!)', '700..1000 (peers disagree!)', 'read-only +0 ok',
    'skipped: <why>' ..."""
    if not ledger.get("applicable", True):
        if ledger.get("skipped"):
            return f"skipped: {ledger['skipped']}" + ("!" if ledger.get("flagged") else "")
        note = str(ledger.get("note", ""))
        # bundles before the `skipped` field
        return "n/a (read-only)" if note.startswith("read-only") else f"skipped: {note}"
    if ledger.get("committed") is None:
        return "no data!"
    mark = "!" if ledger.get("flagged") else ""
    restart = " restart" if ledger.get("resets") else ""
    if ledger.get("read_only"):
        return f"read-only +{ledger['committed']}" + (f"{restart}!" if mark else f"{restart} ok")
    lo, hi = ledger.get("committed_min"), ledger["committed"]
    count = f"{lo}..{hi}" if lo is not None and lo != hi else f"{hi}"
    diff = ledger.get("difference")
    off = _f(None if diff is None else diff * 100, "{:.1f}")
    if not mark and not restart:
        return f"{count} ok" if diff is not None else count
    return f"{count} ({off}% off{restart}{mark})"


def table_rows(summary: Summary) -> list[tuple[str, ...]]:
    """The summary table: goodput first, every Caliper TPS figure next to its failures."""
    rows: list[tuple[str, ...]] = []
    for r in summary.rounds:
        fail = f"{r.failed}" + (" !" if r.failed else "")
        rows.append((r.label, _f(r.requested_tps, "{:g}"),
                     f"{_f(r.send_rate_tps, '{:.1f}')} ({r.failed} failed)",
                     _f(r.goodput(), "{:.2f}"), _f(r.ledger_goodput_tps, "{:.2f}"),
                     f"{_f(r.throughput_tps, '{:.1f}')} ({r.failed} failed)",
                     str(r.succeeded), fail, _f(r.latency.avg), _f(r.latency.p50),
                     _f(r.latency.p95), _f(r.latency.p99), _f(r.latency.max),
                     ledger_text(r.ledger), str(r.verdict.get("verdict", "-"))))
    return rows


def format_table(summary: Summary) -> str:
    """A fixed-width text table of table_rows()."""
    rows = [TABLE_HEAD, *table_rows(summary)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.append(f"  ({TABLE_NOTE})")
    for r in summary.rounds:
        lines.append(f"  {r.label}: {r.verdict.get('summary', '')}")
        if r.ledger.get("note"):
            lines.append(f"  {r.label}: ledger: {r.ledger['note']}")
        if r.error:
            lines.append(f"  {r.label}: error: {r.error}")
    return "\n".join(lines)


# --- writing ------------------------------------------------------------------------------

def redact_network_config(doc: Any) -> Any:
    """A Caliper network config without private keys (clientPrivateKey -> a marker)."""
    if isinstance(doc, Mapping):
        return {k: ({"redacted": "private key removed by fabperf"}
                    if k == "clientPrivateKey" else redact_network_config(v))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact_network_config(v) for v in doc]
    return doc


def scan_private_keys(root: Path) -> list[Path]:
    """Files under root holding a PEM/OpenSSH private key (archives are not opened)."""
    found = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.endswith((".tar.gz", ".png")):
            with open(p, "rb") as f:
                if PRIVATE_KEY.search(f.read()):
                    found.append(p)
    return found


Content = bytes | str | Path


@dataclass
class Staging:
    """A bundle being written: files go into a hidden directory; publish() scans it and
    renames it to its final name."""

    final: Path
    dir: Path

    def write(self, rel: str, content: Content, mode: int = 0o644) -> Path:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"bundle path outside the bundle: {rel}")
        dest = self.dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, dest)
            os.chmod(dest, mode)
        else:
            data = content.encode() if isinstance(content, str) else content
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        return dest

    def write_json(self, rel: str, doc: Any) -> Path:
        return self.write(rel, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")

    def publish(self) -> Path:
        leaked = scan_private_keys(self.dir)
        if leaked:
            names = ", ".join(str(p.relative_to(self.dir)) for p in leaked)
            raise ExternalError(f"results bundle {self.final}: private key material found "
                                f"in {names}; the bundle was not published",
                                hint="this is a fabperf bug: configs must be redacted")
        os.rename(self.dir, self.final)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def stage(results_root: Path, environment: str, stamp: str) -> Staging:
    """A staging directory for results_root/<env>/<stamp> (which must not exist yet)."""
    if not STAMP_RE.match(stamp):
        raise InputError.field(None, "stamp", "%Y%m%dT%H%M%SZ", stamp)
    env_dir = results_root / environment
    final = env_dir / stamp
    if final.exists():
        raise InputError(f"results bundle {final} exists already")
    env_dir.mkdir(parents=True, exist_ok=True)
    tmp = env_dir / f".{stamp}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return Staging(final, tmp)


def write_bundle(results_root: Path, summary: Summary, files: Mapping[str, Content],
                 render: Callable[[Staging, Summary], None] | None = None) -> Path:
    """Write a whole bundle atomically: summary.json, the given files (relative path ->
    content), then `render` (plots + index.html) into the staging directory; scan; rename.
    Any exception (Ctrl-C included) removes the staging directory."""
    st = stage(results_root, summary.environment, summary.stamp)
    try:
        st.write_json(SUMMARY, summary.to_json())
        for rel, content in files.items():
            st.write(rel, content)
        if render is not None:
            render(st, summary)
        return st.publish()
    except BaseException:
        st.discard()
        raise


# --- reading ------------------------------------------------------------------------------

def load(bundle: Path) -> Summary:
    """The Summary of a bundle directory (or of its summary.json)."""
    path = bundle / SUMMARY if bundle.is_dir() else bundle
    if not os.path.lexists(path):
        raise InputError.field(None, "DIR", "a results bundle (with summary.json)",
                               str(bundle))
    # the one input boundary: a regular file, bounded in size and nesting, no NaN
    doc = inputs.load_json(inputs.read_text(path, what="results summary",
                                            max_bytes=MAX_SUMMARY_BYTES),
                           source=path, max_depth=16)
    return Summary.from_json(doc, str(path))


@dataclass(frozen=True)
class Listed:
    """One bundle found by list_bundles()."""

    path: Path
    summary: Summary | None
    error: str = ""


def list_bundles(results_root: Path, environment: str | None = None) -> list[Listed]:
    """Every published bundle under results_root (staging directories are skipped),
    oldest first; unreadable ones are listed with their error."""
    out: list[Listed] = []
    if not results_root.is_dir():
        return out
    envs: Sequence[Path] = [results_root / environment] if environment else \
        sorted(p for p in results_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for env in envs:
        if not env.is_dir():
            continue
        for b in sorted(p for p in env.iterdir() if p.is_dir() and STAMP_RE.match(p.name)):
            try:
                out.append(Listed(b, load(b)))
            except InputError as exc:
                out.append(Listed(b, None, exc.message))
    return out


# --- checking a bundle (the e2e test's acceptance) ---------------------------------------

REQUIRED_PARTS = ("summary.json", "index.html", "report.html", "versions.json",
                  "configs/benchmark.yaml", "plots/rates.png", "plots/latency.png",
                  "plots/cpu.png", "prometheus/snapshot.tar.gz", "logs/manager.log")


JUDGED = ("load-generator-bound", "fabric-bound", "headroom")


def verdict_problems(r: RoundSummary) -> list[str]:
    """What is wrong with a round's verdict: none of the five; a verdict that rests on
    missing data without saying so (a rule without data and no explanation of what is
    missing, or headroom / fabric-bound with a required rule unevaluated); inconclusive
    or failing without their evidence. Older bundles (no `missing`) fail here when they
    had missing data."""
    v = r.verdict.get("verdict")
    where = f"round {r.label}"
    if v not in VERDICTS or v == NO_VERDICT:
        return [f"{where}: verdict {v}"]
    out = []
    explained = r.verdict.get("missing") or {}
    silent = [m for m in r.verdict.get("missing_data", []) if not explained.get(m)]
    if silent:
        out.append(f"{where}: verdict {v} with rules that had no data and no word on what "
                   f"is missing: {', '.join(silent)}")
    required = [c["rule"] for c in r.verdict.get("checks", [])
                if c.get("fired") is None and c.get("missing") and c.get("required", True)]
    # fabric-bound on a Fabric rule that fired is positive evidence, whatever else had no
    # data (launch.bench.verdict's order); headroom, or fabric-bound on nothing, is not
    fabric_fired = any(c.get("fired") and c.get("side") == "fabric"
                       for c in r.verdict.get("checks", []))
    if required and (v == "headroom" or (v == "fabric-bound" and not fabric_fired)):
        out.append(f"{where}: verdict {v} although required rules had no data: "
                   f"{', '.join(required)}")
    if v == "inconclusive" and not explained:
        out.append(f"{where}: inconclusive without saying what is missing")
    if v == "failing" and not r.failed:
        out.append(f"{where}: failing without failed transactions")
    return out


def check_bundle(bundle: Path, *, accept: Sequence[str] = JUDGED) -> list[str]:
    """What is wrong with a published bundle (empty: nothing): a part missing, a
    summary.json round that disagrees with report.html's table, a verdict not in `accept`
    (default: the three that judge the round) or resting on missing data without saying so
    (verdict_problems), a ledger cross-check beyond its tolerance, a private key."""

    problems = [f"missing {rel}" for rel in REQUIRED_PARTS if not (bundle / rel).is_file()]
    if not list(bundle.glob("logs/*/caliper-worker@*.log")):
        problems.append("missing the workers' logs (logs/<host>/caliper-worker@N.log)")
    try:
        summary = load(bundle)
    except InputError as exc:
        return [*problems, exc.message]
    if (bundle / "report.html").is_file():
        rows = {r.label: r for r in report.parse_report_html(
            (bundle / "report.html").read_text(), where=str(bundle / "report.html"))}
        for r in summary.rounds:
            row = rows.get(r.label)
            if row is None:
                problems.append(f"round {r.label}: not in report.html")
                continue
            mine = (r.succeeded, r.failed, r.send_rate_tps, r.throughput_tps, r.latency.avg,
                    r.latency.max)
            theirs = (row.succeeded, row.failed, row.send_rate, row.throughput,
                      row.avg_latency, row.max_latency)
            if mine != theirs:
                problems.append(f"round {r.label}: summary.json {mine} != report.html {theirs}")
    for r in summary.rounds:
        problems += verdict_problems(r)
        if r.verdict.get("verdict") in JUDGEMENTS and r.verdict.get("verdict") not in accept:
            problems.append(f"round {r.label}: verdict {r.verdict.get('verdict')}: "
                            f"{r.verdict.get('summary', '')}")
        if r.ledger.get("flagged"):
            problems.append(f"round {r.label}: ledger cross-check {ledger_text(r.ledger)}")
    problems += [f"private key in {p.relative_to(bundle)}" for p in scan_private_keys(bundle)]
    return problems
