"""The per-environment cgroup sampler of the nspawn provider (a small background process).

Every few seconds it reads each container's cgroup (launch.machines.providers.cgroups) and writes
`fabperf_cgroup.prom` into that host's textfile directory, which the provider bind-mounts
over node_exporter's textfile collector directory inside the container. So the monitor's
Prometheus scrapes `fabperf_cgroup_cpu_seconds_total` and `fabperf_cgroup_cpus` from each
host's own node_exporter, with the same `host` and `role` labels (from file_sd) as its
other node series; nothing in the monitor's configuration changes.

It is started by the provider, recorded in the state like a VM process (its argv carries
the environment's tag), and stopped by `down`. It also stops by itself when its
configuration file disappears (the environment's run directory went), so a lost state
file does not leave it running for ever.

    python -m launch.machines.providers.cgroup_sampler TAG CONFIG.json
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from fabkit.atomic import write_atomic
from launch.machines.providers.cgroups import Cgroup, textfile

INTERVAL = 2.0
TEXTFILE = "fabperf_cgroup.prom"


@dataclass(frozen=True)
class Watched:
    """One host the sampler publishes."""

    host: str
    cgroup: str
    textfile_dir: Path


def read_config(path: Path) -> list[Watched] | None:
    """The hosts of the configuration file (None: the file is gone, stop)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return []          # being replaced: try again next round
    return [Watched(h, str(v["cgroup"]), Path(v["textfile_dir"]))
            for h, v in sorted(doc.get("hosts", {}).items())]


def sample_once(hosts: list[Watched], available: tuple[int, ...], root: Path | None = None) -> int:
    """Write each host's textfile; how many were written (a host whose cgroup is not there
    yet or any more is skipped)."""
    written = 0
    for w in hosts:
        cg = Cgroup(w.cgroup) if root is None else Cgroup(w.cgroup, root)
        try:
            text = textfile(cg.sample(available))
            if w.textfile_dir.is_dir():
                write_atomic(w.textfile_dir / TEXTFILE, text, mode=0o644)
                written += 1
        except (OSError, ValueError):
            continue
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m launch.machines.providers.cgroup_sampler TAG CONFIG.json",
              file=sys.stderr)
        return 2
    config = Path(args[1])
    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    available = tuple(sorted(os.sched_getaffinity(0)))
    while not stop:
        hosts = read_config(config)
        if hosts is None:
            return 0
        sample_once(hosts, available)
        time.sleep(INTERVAL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
