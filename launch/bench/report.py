"""What Caliper itself says about a run: its report.html and the manager's log.

Caliper 0.6.0's manager writes report.html with a summary table (one row per round:
Name, Succ, Fail, Send Rate (TPS), Max Latency (s), Min Latency (s), Avg Latency (s),
Throughput (TPS)) and logs the same table per round as it finishes it, which is what
survives an interrupted run (report.html is written only at the very end). Caliper's
Send Rate is (succ + fail) / (last submit - first submit) and its Throughput is
(succ + fail) / (last finish - first submit): failed transactions count in both, so a
number is never shown here without its failures. Caliper reports no latency percentiles;
they come from Prometheus (launch.bench.signals).

The manager log also gives each round's window: 'Monitors successfully started' is logged
right before the round's transactions start, and 'Finished round N (label) in S seconds'
carries the measured duration S.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any

from fabkit.errors import InputError

COLUMNS = ("Name", "Succ", "Fail", "Send Rate (TPS)", "Max Latency (s)", "Min Latency (s)",
           "Avg Latency (s)", "Throughput (TPS)")


@dataclass(frozen=True)
class RoundResult:
    """One row of Caliper's result table, as numbers (None where Caliper printed '-')."""

    label: str
    succeeded: int
    failed: int
    send_rate: float | None
    max_latency: float | None
    min_latency: float | None
    avg_latency: float | None
    throughput: float | None
    source: str = "report.html"

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "succeeded": self.succeeded, "failed": self.failed,
                "send_rate": self.send_rate, "max_latency": self.max_latency,
                "min_latency": self.min_latency, "avg_latency": self.avg_latency,
                "throughput": self.throughput, "source": self.source}


def _number(text: str, column: str, where: str) -> float | None:
    t = text.strip()
    if t in ("-", "N/A", ""):
        return None
    try:
        return float(t)
    except ValueError:
        raise InputError(f"{where}: column {column!r}: expected a number or '-', "
                         f"found {t!r}") from None


def row_to_result(head: Sequence[str], cells: Sequence[str], *, where: str,
                  source: str) -> RoundResult:
    """A table row (any column order; the columns must be Caliper's) as a RoundResult."""
    head = [h.strip() for h in head]
    missing = [c for c in COLUMNS if c not in head]
    if missing:
        raise InputError(f"{where}: the result table lacks the columns {missing} "
                         f"(found {head}); is this a Caliper 0.6 report?")
    v = dict(zip(head, (c.strip() for c in cells), strict=False))

    def count(col: str) -> int:
        n = _number(v.get(col, ""), col, where)
        if n is None or n != int(n) or n < 0:
            raise InputError(f"{where}: column {col!r}: expected a count, found {v.get(col)!r}")
        return int(n)

    return RoundResult(
        label=v["Name"], succeeded=count("Succ"), failed=count("Fail"),
        send_rate=_number(v["Send Rate (TPS)"], "Send Rate (TPS)", where),
        max_latency=_number(v["Max Latency (s)"], "Max Latency (s)", where),
        min_latency=_number(v["Min Latency (s)"], "Min Latency (s)", where),
        avg_latency=_number(v["Avg Latency (s)"], "Avg Latency (s)", where),
        throughput=_number(v["Throughput (TPS)"], "Throughput (TPS)", where),
        source=source)


class _Tables(HTMLParser):
    """Collects every <table> as rows of cell texts, with the id of the enclosing div."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[str, list[list[tuple[str, str]]]]] = []
        self._divs: list[str] = []
        self._stack: list[list[list[tuple[str, str]]]] = []
        self._cell: list[str] | None = None
        self._kind = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "div":
            self._divs.append(dict(attrs).get("id") or "")
        elif tag == "table":
            rows: list[list[tuple[str, str]]] = []
            self._stack.append(rows)
            div = next((d for d in reversed(self._divs) if d), "")
            self.tables.append((div, rows))
        elif tag == "tr" and self._stack:
            self._stack[-1].append([])
        elif tag in ("td", "th") and self._stack:
            self._cell, self._kind = [], tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._divs:
            self._divs.pop()
        elif tag == "table" and self._stack:
            self._stack.pop()
        elif tag in ("td", "th") and self._cell is not None and self._stack:
            rows = self._stack[-1]
            if not rows:
                rows.append([])
            rows[-1].append((self._kind, "".join(self._cell).strip()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_report_html(text: str, *, where: str = "report.html") -> list[RoundResult]:
    """The summary table of a Caliper report.html, one RoundResult per round."""
    parser = _Tables()
    parser.feed(text)
    parser.close()
    candidates = [(div, rows) for div, rows in parser.tables
                  if rows and [c for k, c in rows[0] if k == "th"][:1] == ["Name"]]
    summary = next((rows for div, rows in candidates if div == "benchmarksummary"),
                   candidates[0][1] if candidates else None)
    if summary is None:
        raise InputError(f"{where}: no Caliper result table (a header row starting with "
                         "'Name') found", hint="is it Caliper's report.html?")
    head = [c for _, c in summary[0]]
    return [row_to_result(head, [c for _, c in row], where=f"{where} row {i}",
                          source="report.html")
            for i, row in enumerate(summary[1:], 1) if row]


# --- the manager's log ------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*m")     # Caliper colours the level (colorize.level: true)
_ERROR = re.compile(r"\berror\b")
_JOURNAL = re.compile(r"^(?P<ts>\d{9,}\.\d+) \S+ [^:]+: (?P<msg>.*)$")   # journalctl -o short-unix
_STARTED = re.compile(r"Started round (\d+) \((.*)\)\s*$")
_MONITORS = re.compile(r"Monitors successfully started")
_FINISHED = re.compile(r"Finished round (\d+) \((.*)\) in ([\d.]+) seconds")
_FAILED = re.compile(r"Failed round (\d+) \((.*?)\): (.*)$")
_PROGRESS = re.compile(r"\[(.*) Round (\d+) Transaction Info\] - Submitted: (\d+) "
                       r"Succ: (\d+) Fail:\s*(\d+) Unfinished:\s*(-?\d+)")
_WAITING = re.compile(r"Waiting for (\d+) workers to be connected")
_CONNECTED = re.compile(r"(\d+) workers connected")
_READY = re.compile(r"(\d+) workers ready")
_DONE = re.compile(r"Benchmark finished in ([\d.]+) seconds")
_TABLE_TITLE = re.compile(r"### (Test result|All test results) ###")


@dataclass(frozen=True)
class Progress:
    """The manager's latest 'Transaction Info' line of a round."""

    at: float
    submitted: int
    succeeded: int
    failed: int
    unfinished: int


@dataclass(frozen=True)
class RoundLog:
    """One round as the manager logged it (times are epoch seconds from the journal)."""

    index: int                  # 0-based
    label: str
    started: float | None = None
    measured_start: float | None = None
    finished: float | None = None
    duration: float | None = None
    error: str = ""
    progress: Progress | None = None
    result: RoundResult | None = None   # the table the manager printed
    history: tuple[Progress, ...] = ()  # every 'Transaction Info' line of the round

    def inflight(self) -> tuple[tuple[float, float], ...]:
        """(time, unfinished) of every progress line: Caliper's own count of transactions
        in flight (the verdict's backlog test when the Pushgateway series are missing)."""
        return tuple((p.at, float(p.unfinished)) for p in self.history if p.at)

    @property
    def window(self) -> tuple[float, float] | None:
        """(start, end) of the transactions, when the round finished."""
        if self.measured_start is None or self.duration is None:
            return None
        return self.measured_start, self.measured_start + self.duration


@dataclass(frozen=True)
class ManagerLog:
    """What the manager's log says so far."""

    expected_workers: int | None = None
    connected: bool = False
    ready: bool = False
    rounds: tuple[RoundLog, ...] = ()
    finished: bool = False
    errors: tuple[str, ...] = field(default_factory=tuple)


def _strip(line: str) -> tuple[float | None, str]:
    line = _ANSI.sub("", line)
    m = _JOURNAL.match(line)
    return (float(m.group("ts")), m.group("msg")) if m else (None, line)


def _ascii_row(msg: str) -> list[str] | None:
    s = msg.strip()
    if not (s.startswith("|") and s.endswith("|")) or set(s) <= {"|", "-", "+"}:
        return None
    return [c.strip() for c in s[1:-1].split("|")]


def parse_manager_log(lines: Iterable[str]) -> ManagerLog:
    """Parse `journalctl -o short-unix` lines of the manager (plain lines work too, without
    times)."""
    expected = None
    connected = ready = done = False
    rounds: dict[int, RoundLog] = {}
    errors: list[str] = []
    current: int | None = None
    table_head: list[str] | None = None
    in_table = False
    for line in lines:
        ts, msg = _strip(line.rstrip("\n"))
        if _TABLE_TITLE.search(msg):
            in_table, table_head = msg.find("Test result") >= 0, None
            continue
        row = _ascii_row(msg)
        if row is not None and in_table:
            if table_head is None:
                table_head = row
            elif current is not None and current in rounds:
                try:
                    res = row_to_result(table_head, row, where="manager log", source="manager log")
                except InputError:
                    continue
                rounds[current] = replace(rounds[current], result=res)
                in_table = False
            continue
        if m := _WAITING.search(msg):
            expected = int(m.group(1))
        elif _CONNECTED.search(msg):
            connected = True
        elif _READY.search(msg):
            ready = True
        elif m := _STARTED.search(msg):
            current = int(m.group(1)) - 1
            rounds[current] = RoundLog(current, m.group(2), started=ts)
        elif _MONITORS.search(msg) and current is not None:
            rounds[current] = replace(rounds[current], measured_start=ts)
        elif m := _FINISHED.search(msg):
            i = int(m.group(1)) - 1
            r = rounds.get(i, RoundLog(i, m.group(2)))
            rounds[i] = replace(r, finished=ts, duration=float(m.group(3)))
        elif m := _FAILED.search(msg):
            i = int(m.group(1)) - 1
            r = rounds.get(i, RoundLog(i, m.group(2)))
            rounds[i] = replace(r, finished=ts, error=m.group(3).strip())
        elif m := _PROGRESS.search(msg):
            i = int(m.group(2))
            if i in rounds:
                p = Progress(ts or 0.0, int(m.group(3)), int(m.group(4)), int(m.group(5)),
                             int(m.group(6)))
                last = rounds[i].progress
                # the counts are cumulative: a line whose counts fell summed only the workers
                # whose update had reached the manager by its tick (seen at a 1 s interval:
                # 501 submitted between 977 and 1052 with 2 workers): not a measurement
                if last is None or (p.submitted >= last.submitted and
                                    p.succeeded + p.failed >= last.succeeded + last.failed):
                    rounds[i] = replace(rounds[i], progress=p,
                                        history=(*rounds[i].history, p))
        elif _DONE.search(msg):
            done = True
        elif _ERROR.search(msg) and "[caliper]" in msg:
            errors.append(html.unescape(msg.strip()))
    return ManagerLog(expected, connected, ready, tuple(rounds[i] for i in sorted(rounds)),
                      done, tuple(errors[-20:]))
