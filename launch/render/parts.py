"""What the bundles of both spec kinds are made of: the readers and writers of their
files, their text formats, a Caliper worker VM's files and plan.json."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from launch.render import caliper, cloudinit
from launch.render.cloudinit import File, UserData
from launch.render.plan import CaliperWorker, Host, Plan
from launch.spec.contract import (
    CALIPER_DIR,
    CALIPER_USER,
    CALIPER_WORKER_BENCHMARK,
    CALIPER_WORKER_ENV,
)

CALIPER_OWNER = f"{CALIPER_USER}:{CALIPER_USER}"


class Reader:
    """Reads each crypto file once, as text (CA certificates are shared by every node of
    an organisation and land in many hosts' user-data)."""

    def __init__(self) -> None:
        self.cache: dict[str, str] = {}

    def __call__(self, path: str | Path) -> str:
        key = os.fspath(path)
        text = self.cache.get(key)
        if text is None:
            with open(key, encoding="ascii") as f:  # PEM and YAML: ASCII only
                text = self.cache[key] = f.read()
        return text


def yaml_text(doc: object) -> str:
    return cloudinit.yaml_text(doc)


def json_text(doc: object) -> str:
    return json.dumps(doc, indent=2) + "\n"


def json_lines(items: list) -> str:
    """A JSON list with one item per line: readable, and C-encoded (file_sd of big labs)."""
    return "[\n" + ",\n".join(json.dumps(i, sort_keys=True) for i in items) + "\n]\n"


def worker_files(plan: Plan, host: Host, worker: CaliperWorker, network_config: str,
                  caliper_yaml: str) -> list[File]:
    """A Caliper worker VM's files: its network config (0600: a client key), Caliper's
    runtime config, the worker bench config (its push observer) and worker.env."""
    return [
        File(f"{CALIPER_DIR}/networkconfig.yaml", network_config, CALIPER_OWNER, "0600"),
        File(f"{CALIPER_DIR}/caliper.yaml", caliper_yaml, CALIPER_OWNER),
        File(CALIPER_WORKER_BENCHMARK, caliper.worker_benchmark_text(plan), CALIPER_OWNER),
        File(CALIPER_WORKER_ENV, cloudinit.env_text(
            caliper.worker_env(plan, worker), title="Caliper remote workers",
            environment=plan.spec.name, host=host.name)),
    ]


class Writer:
    """Writes bundle files; remembers the directories it made (mkdir is slow on some disks)."""

    def __init__(self) -> None:
        self.made: set[Path] = set()

    def __call__(self, path: Path, data: bytes | str, mode: int = 0o644) -> None:
        # No fsync: a bundle is reproducible from the spec; the staging swap gives atomicity.
        raw = data.encode() if isinstance(data, str) else data
        if path.parent not in self.made:
            path.parent.mkdir(parents=True, exist_ok=True)  # 0755: render sets umask 022
            self.made.add(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def write_plan(write: Writer, root: Path, plan: Plan, nonce: str,
                user_data: dict[str, UserData]) -> None:
    """plan.json: the plan, the nonce and each host's user-data size and digest."""
    doc = plan.to_json()
    doc["nonce"] = nonce
    for entry in doc["hosts"]:
        ud = user_data[entry["name"]]
        entry["user_data"] = {"bytes": ud.size, "raw_bytes": ud.raw_size, "gzip": ud.gzipped,
                              "sha256": hashlib.sha256(ud.data).hexdigest()}
    write(root / "plan.json", json_text(doc))
