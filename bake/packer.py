"""Packer through fabkit.runner: version detection, validate, build with machine-readable output.

`packer build -machine-readable` prints ``timestamp,target,type,data...`` lines in which
commas inside data are written ``%!(PACKER_COMMA)``; ``ui`` lines become progress lines and
``artifact,N,id,...`` gives the artifact id (an AMI id is ``region:ami-...``).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fabkit import runner
from fabkit.errors import ExternalError

Version = tuple[int, int, int]
_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> Version:
    """(major, minor, patch) from `packer version` output ("Packer v1.6.6" or "1.11.2")."""
    m = _VERSION_RE.search(text)
    if not m:
        raise ExternalError(f"could not read a version from `packer version`: {text.strip()!r}")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


def detect_version(packer: str = "packer") -> Version:
    """The installed Packer's version."""
    done = runner.run([packer, "version"], what="packer version", timeout=60)
    return parse_version(done.stdout)


def format_version(v: Version) -> str:
    return ".".join(str(x) for x in v)


@dataclass(frozen=True)
class Line:
    """One machine-readable line."""

    timestamp: str
    target: str
    type: str
    data: tuple[str, ...]


def parse_line(raw: str) -> Line | None:
    """Split one machine-readable line; None for anything else."""
    parts = raw.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    data = tuple(p.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "")
                 for p in parts[3:])
    return Line(parts[0], parts[1], parts[2], data)


@dataclass(frozen=True)
class Stage:
    """One stage of a build and how long it took (seconds, from Packer's timestamps)."""

    name: str
    seconds: float


# Packer's own "say" messages that open a stage (qemu, amazon-ebs, openstack builders).
_STAGE_MARKERS = (
    ("Waiting for SSH to become available", "boot -> SSH"),
    ("Uploading ", "uploads"),
    ("Gracefully halting", "seal + shutdown"),
    ("Stopping the source instance", "seal + shutdown"),
    ("Creating AMI", "image capture"),
    ("Creating the image", "image capture"),
    ("Converting hard drive", "convert"),
)
_SCRIPT_MARKER = "Provisioning with shell script: "
_LOCAL_MARKER = "Running local shell script: "
_GOSS_HINTS = ("bake.goss", "goss/goss", "/goss ")


def stage_of(msg: str, current: str | None) -> str | None:
    """The stage a Packer message opens, or None when it opens none."""
    if msg.startswith(_SCRIPT_MARKER):
        path = msg[len(_SCRIPT_MARKER):].strip()
        _, sep, rel = path.partition("packer/scripts/")
        return rel if sep else "inline shell"
    if msg.startswith(_LOCAL_MARKER):
        return "goss" if any(h in msg for h in _GOSS_HINTS) else "local shell"
    for marker, name in _STAGE_MARKERS:
        if msg.startswith(marker):
            if name == "uploads" and current in ("uploads", "goss"):
                return None
            if name == "uploads" and "/goss" in msg:
                return "goss"
            return name
    return None


@dataclass
class BuildWatcher:
    """Turns machine-readable lines into progress messages, collects artifact ids and times
    the stages (boot, each script by name, goss, seal, convert)."""

    progress: Callable[[str], None]
    artifact_ids: list[str]
    errors: list[str]
    stages: list[Stage] = field(default_factory=list)
    _open: tuple[str, float] | None = None
    _last: float = 0.0

    def __call__(self, raw: str) -> None:
        line = parse_line(raw)
        if line is None:
            return
        ts = float(line.timestamp)
        self._last = ts
        if line.type == "ui" and len(line.data) >= 2:
            kind, msg = line.data[0], line.data[1].strip()
            if kind == "say":
                name = stage_of(msg.lstrip("=> ").split(": ", 1)[-1] if ": " in msg
                                else msg, self._open[0] if self._open else None)
                if name is not None and (self._open is None or name != self._open[0]):
                    self._close(ts)
                    self._open = (name, ts)
            # "error" lines are mostly the guest scripts' stderr: shown as they come.
            if msg and kind in {"say", "message", "error"}:
                self.progress(msg)
            if kind == "error" and msg:
                self.errors.append(msg)
        elif line.type == "artifact" and len(line.data) >= 3 and line.data[1] == "id":
            self.artifact_ids.append(line.data[2])

    def _close(self, ts: float) -> None:
        if self._open is not None:
            name, start = self._open
            stage = Stage(name, max(0.0, ts - start))
            self.stages.append(stage)
            self.progress(f"stage {name}: {format_seconds(stage.seconds)}")
            self._open = None

    def finish(self) -> None:
        """Close the last stage at the last line's time."""
        self._close(self._last)


def format_seconds(seconds: float) -> str:
    """m:ss."""
    m, sec = divmod(int(round(seconds)), 60)
    return f"{m}:{sec:02d}"


def log_path(build_dir: Path, image: str, provider: str, action: str) -> Path:
    """build/logs/<image>-<provider>-<action>-<UTC stamp>.log."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return build_dir / "logs" / f"{image}-{provider}-{action}-{stamp}.log"


def validate(template_dir: Path, *, log: Path, syntax_only: bool, cwd: Path,
             env: dict[str, str] | None = None, packer: str = "packer") -> runner.Completed:
    """`packer validate [-syntax-only] DIR`; ExternalError (with the log) when it fails."""
    argv = [packer, "validate"] + (["-syntax-only"] if syntax_only else []) + [str(template_dir)]
    return runner.run(argv, log_path=log, cwd=cwd, env=env, what="packer validate",
                      timeout=300)


def build(template_dir: Path, *, log: Path, cwd: Path, progress: Callable[[str], None],
          env: dict[str, str] | None = None, packer: str = "packer",
          force: bool = True, stages: list[Stage] | None = None) -> list[str]:
    """`packer build -machine-readable -color=false DIR`; returns the artifact ids (and
    appends each stage's duration to ``stages`` when given)."""
    watcher = BuildWatcher(progress, [], [])
    argv = [packer, "build", "-machine-readable", "-color=false"]
    if force:
        argv.append("-force")   # a stale output directory from an interrupted build
    argv.append(str(template_dir))
    try:
        runner.run(argv, log_path=log, cwd=cwd, env=env, on_line=watcher, what="packer build")
    finally:
        watcher.finish()
        if stages is not None:
            stages.extend(watcher.stages)
    if not watcher.artifact_ids:
        raise ExternalError(f"packer build produced no artifact\n  log: {log}")
    return watcher.artifact_ids
