"""The channel bootstrap seen from the launcher: the last readiness layer of `launch up`.

The bootstrap job itself (packer/files/fabric-node/fabperf-bootstrap) runs on the bootstrap
node, started there by cloud-init. This module follows it over SSH: it relays the job's own
progress lines (its journal) as they appear, returns the done marker once it holds this
launch's nonce, and turns the failed marker (the step, the node, Fabric's own error) into a
readiness failure. It also asks the job for every node's channel height (`launch status`).
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fabkit import runner
from fabkit.errors import ExternalError
from launch.machines import ssh
from launch.spec.contract import BOOTSTRAP_DONE, BOOTSTRAP_FAILED, BOOTSTRAP_PROGRAM, BOOTSTRAP_UNIT

log = logging.getLogger("fabperf.bootstrap")

PREFIX = "[fabperf-bootstrap] "
_SEP = "--fabperf-marker--"


class BootstrapFailed(ExternalError):
    """The bootstrap job wrote its failed marker, or did not finish in time."""

    def __init__(self, host: str, message: str, marker: Mapping[str, Any] | None = None,
                 journal: str = "") -> None:
        parts = [f"channel bootstrap on {host} failed: {message}"]
        if marker:
            parts.append(f"  {BOOTSTRAP_FAILED}: step {marker.get('step')!r} on node "
                         f"{marker.get('node')!r}:\n"
                         + "\n".join("    " + ln for ln in str(marker.get("error", ""))
                                     .splitlines()))
        if journal:
            parts.append("  the job's last lines:\n"
                         + "\n".join("    " + ln for ln in journal.splitlines()[-15:]))
        super().__init__("\n".join(parts),
                         hint=f"`launch ssh ENV {host} -- sudo journalctl -u {BOOTSTRAP_UNIT}` "
                              "shows the whole job; `launch down ENV` cleans up")
        self.marker = dict(marker or {})


@dataclass(frozen=True)
class Poll:
    """One look at the job: its markers and its journal."""

    done: dict[str, Any] | None
    failed: dict[str, Any] | None
    lines: tuple[str, ...]


def _json_or_none(text: str) -> dict[str, Any] | None:
    text = text.strip()
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return {"error": f"unreadable marker: {text[:200]}"}
    return doc if isinstance(doc, dict) else None


def parse_poll(stdout: str) -> Poll:
    """Split what POLL_COMMAND printed into the done marker, the failed marker, the journal."""
    parts = stdout.split(_SEP)
    parts += [""] * (3 - len(parts))
    lines = tuple(ln[len(PREFIX):] if ln.startswith(PREFIX) else ln
                  for ln in parts[2].splitlines() if ln.strip())
    return Poll(_json_or_none(parts[0]), _json_or_none(parts[1]), lines)


POLL_COMMAND = (f"sudo -n cat {shlex.quote(BOOTSTRAP_DONE)} 2>/dev/null; echo {_SEP}; "
                f"sudo -n cat {shlex.quote(BOOTSTRAP_FAILED)} 2>/dev/null; echo {_SEP}; "
                f"sudo -n journalctl -u {BOOTSTRAP_UNIT} -o cat --no-pager 2>/dev/null "
                f"| grep -F {shlex.quote(PREFIX.strip())}")

Runner = Callable[[str, float], runner.Completed]


def ssh_runner(target: ssh.Target) -> Runner:
    """Commands on the bootstrap node through the environment's SSH key."""
    return lambda command, timeout: ssh.run(target, command, timeout=timeout, check=False)


def wait(run: Runner, host: str, nonce: str, *, timeout: float,
         progress: Callable[[str], None], poll: float = 3.0,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Follow the job until its done marker holds ``nonce``; relay its progress lines."""
    start = clock()
    shown = 0
    last_lines: tuple[str, ...] = ()
    while True:
        try:
            res = run(POLL_COMMAND, 60)
            got = parse_poll(res.stdout) if res.returncode in (0, 1) else None
        except ExternalError as exc:   # the runner's own timeout: try again
            log.debug("%s: %s", host, exc)
            got = None
        if got is not None:
            last_lines = got.lines
            for line in got.lines[shown:]:
                progress(line)
            shown = max(shown, len(got.lines))
            if got.done is not None and got.done.get("nonce") == nonce:
                return got.done
            if got.failed is not None and got.failed.get("nonce", nonce) == nonce:
                raise BootstrapFailed(host, "the job reported a failure", got.failed,
                                      "\n".join(last_lines))
        if clock() - start > timeout:
            raise BootstrapFailed(host, f"no done marker with this launch's nonce within "
                                  f"{timeout:.0f}s", None, "\n".join(last_lines))
        sleep(poll)


def heights(run: Runner) -> dict[str, dict[str, dict[str, Any]]]:
    """channel -> node -> {"role", "height", "status"}, as the bootstrap job reports them."""
    res = run(f"sudo -n {BOOTSTRAP_PROGRAM} status", 180)
    if res.returncode != 0:
        raise ExternalError(f"{BOOTSTRAP_PROGRAM} status failed (exit {res.returncode}): "
                            f"{(res.stderr or res.stdout).strip()[-500:]}")
    try:
        return dict(json.loads(res.stdout)["heights"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExternalError(f"{BOOTSTRAP_PROGRAM} status printed no heights: {exc}") from exc


def summary(done: Mapping[str, Any]) -> dict[str, Any]:
    """What the state keeps of a done marker."""
    return {k: done.get(k) for k in ("nonce", "seconds", "package_ids", "timings", "at")}
