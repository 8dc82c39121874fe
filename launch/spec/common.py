"""What every kind of spec shares: the kinds (SpecKind), the fields both declare (SpecBase),
their models (provider, Fabric version, Caliper rounds, monitor) and the readers of the
sections both kinds have. launch.spec.env (an environment fabperf launches whole) and
launch.spec.byof (a network the user already runs) build on it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from fabkit import inputs
from fabkit.inputs import Fields
from launch.spec.providers import Provider
from launch.spec.thresholds import Thresholds


class SpecKind(StrEnum):
    """What a spec file describes (its top-level `kind:`; absent: an environment)."""

    ENVIRONMENT = "environment"   # fabperf launches the Fabric network, workers and monitor
    BYOF = "byof"                 # the user's Fabric network; fabperf adds workers and monitor

    @classmethod
    def of(cls, raw: object) -> SpecKind:
        """The kind a parsed document declares."""
        kind = raw.get("kind") if isinstance(raw, Mapping) else None
        return cls.BYOF if kind == cls.BYOF.value else cls.ENVIRONMENT


# fullmatch (no trailing newline); 39 characters leave room for the host name in VM names
# and tags (<env>-<host> within a 63-character DNS label).
ENV_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,37}[a-z0-9])?")


# Patterns are matched with fullmatch: `$` would accept a trailing newline ("Org1MSP\n").
DOMAIN_RE = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
                     r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
CHANNEL_RE = re.compile(r"[a-z][a-z0-9.-]{0,248}")  # Fabric's channel name rule
LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")   # a DNS label; an image name
# a workload module, relative to Caliper's workspace on the worker VM: no component starts
# with "." (so no "..") and it is not absolute: it cannot name a file outside the workspace
WORKLOAD_RE = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}/){0,15}"
                         r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\.js")

# Upper bounds of the sections both kinds share (launch.spec.env has the topology's).
MAX_CALIPER_VMS = 128
MAX_PROCESSES = 64
MAX_ROUNDS = 100
WHY_VMS = "each worker VM carries a network config with every peer's TLS CA"
WHY_PROCESSES = "each worker process is a Node.js process on one VM (more than its cores)"


@dataclass(frozen=True)
class Round:
    """One Caliper round. `tps` is the total across all workers (Caliper divides it)."""

    label: str
    tps: int
    duration: int | None  # seconds (txDuration)
    tx_number: int | None  # txNumber
    workload_module: str
    workload_arguments: Mapping[str, Any]
    rate_control: Mapping[str, Any] | None  # None: fixed-rate at `tps`

@dataclass(frozen=True)
class Caliper:
    """The load generator: `vms` worker VMs, each running `processes` worker processes."""

    vms: int
    processes: int | None   # None: `auto`, about 1.5 per vCPU of the VM (launch bench decides)
    rounds: tuple[Round, ...]

    @property
    def boot_processes(self) -> int:
        """Worker processes a VM starts at boot: the spec's number, or one for `auto` (the
        readiness check proves the worker runs; `launch bench` then starts its count)."""
        return self.processes or 1

    @property
    def workers(self) -> int:
        """All worker processes at boot: Caliper's test.workers.number of the rendered
        benchmark (`launch bench` renders its own with the count it started)."""
        return self.vms * self.boot_processes

@dataclass(frozen=True)
class Monitor:
    """The monitor VM: Prometheus, Pushgateway, Grafana, Mosquitto, Caliper manager."""

    grafana_admin_user: str

@dataclass(frozen=True)
class FabricVersion:
    """The Fabric release the images carry, and the capabilities the channel gets."""

    version: str

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor)

    @property
    def channel_capability(self) -> str:
        return "V3_0" if self.major_minor >= (3, 0) else "V2_0"

    @property
    def orderer_capability(self) -> str:
        return "V2_0"

    @property
    def application_capability(self) -> str:
        return "V2_5"


@dataclass(frozen=True, kw_only=True)
class SpecBase:
    """The fields every kind of spec has, declared once: what launch's planners, the
    providers and bench read of any spec."""

    kind: ClassVar[SpecKind]
    source: Path
    name: str
    provider: Provider
    settings: Mapping[str, Any]
    cidr: str
    first_host: int
    images: Mapping[str, str]           # image name -> explicit artifact id
    manifest: Path                      # where unnamed images are resolved
    fabric: FabricVersion
    caliper: Caliper
    monitor: Monitor
    bench_thresholds: Mapping[str, Any] = field(default_factory=dict)
    """`bench: thresholds:` overrides of launch.spec.thresholds.Thresholds (validated here)"""
    avoid_addresses: frozenset[str] = frozenset()
    """addresses of network.cidr something else holds (the cloud says, at `up`): the plan
    gives its hosts other ones"""


# --- the shared sections ------------------------------------------------------------------


def read_name(top: Fields) -> str:
    """`name:` (the rule `launch status`/`down` apply to the name they are given)."""
    name: str = top.str("name", pattern=ENV_NAME_RE,
                        what="an environment name (lower-case letters, digits and '-', "
                             "at most 39 characters, starting and ending with a letter or "
                             "digit)")
    return name


def read_settings(top: Fields) -> dict[str, Any]:
    """`settings:` (the provider's; checked against its table by launch.machines)."""
    settings = top.get("settings", {})
    if not isinstance(settings, Mapping):
        raise top.fail("settings", "a mapping of provider settings", settings)
    return dict(settings)


def read_network(top: Fields, provider: Provider) -> tuple[str, int]:
    m = top.map("network", required=provider.facts.starts_hosts)
    default_cidr = ... if provider.facts.starts_hosts else "10.99.0.0/24"
    cidr = m.str("cidr", default_cidr)
    try:
        net = ipaddress.IPv4Network(cidr)
    except ValueError:
        raise m.fail("cidr", "an IPv4 network such as 10.40.0.0/24", cidr) from None
    first = m.int("first_host", 10, minimum=2,
                  why="offset 0 is the network address and 1 the gateway")
    if first >= net.num_addresses - 1:
        raise m.fail("first_host", f"an offset inside {cidr}", first)
    m.done()
    return str(net), first

def read_images(top: Fields) -> tuple[dict[str, str], Path]:
    """`images:` (image name -> explicit artifact id) and `manifest:` (bake's manifest)."""
    images_raw = top.get("images", {})
    if not isinstance(images_raw, Mapping) or not all(
        isinstance(v, str) for v in images_raw.values()
    ):
        raise top.fail("images", "a mapping image name -> artifact id", images_raw)
    for image, artifact in images_raw.items():  # qemu artifacts are paths
        if not isinstance(image, str) or not LABEL_RE.fullmatch(image):
            raise top.fail("images", "image names such as fabric-node (a-z, 0-9, -)", image)
        inputs.check_path_text(artifact, source=top.file, path=f"images.{image}")
    manifest = Path(inputs.check_path_text(top.str("manifest", "build/manifest.json"),
                                           source=top.file, path="manifest"))
    return dict(images_raw), manifest

def read_caliper(top: Fields) -> Caliper:
    m = top.map("caliper")
    w = m.map("workers")
    vms = w.int("vms", 1, minimum=1, maximum=MAX_CALIPER_VMS, why=WHY_VMS)
    processes = None if w.get("processes", "auto") == "auto" else \
        w.int("processes", minimum=1, maximum=MAX_PROCESSES, why=WHY_PROCESSES)
    w.done()
    rounds: list[Round] = []
    raw_rounds = m.list("rounds") or [{"label": "create", "tps": 100, "duration": 60}]
    if len(raw_rounds) > MAX_ROUNDS:
        raise m.fail("rounds", f"at most {MAX_ROUNDS} rounds", f"{len(raw_rounds)} rounds")
    for i, item in enumerate(raw_rounds):
        r = m.item("rounds", i, item)
        duration = r.int("duration", None, minimum=1, maximum=7 * 86400,
                         why="a round longer than a week is a mistake")
        tx_number = r.int("tx_number", None, minimum=1)
        if (duration is None) == (tx_number is None):
            raise r.fail("duration", "exactly one of duration (seconds) or tx_number",
                         {"duration": duration, "tx_number": tx_number})
        wl = r.map("workload")
        arguments = wl.get("arguments", {})
        if not isinstance(arguments, Mapping):
            raise wl.fail("arguments", "a mapping", arguments)
        rate = r.get("rate_control", None)
        if rate is not None and (not isinstance(rate, Mapping) or "type" not in rate):
            raise r.fail("rate_control", "a mapping with type and opts", rate)
        rnd = Round(
            label=r.str("label", pattern=NAME_RE, what="a round label"),
            tps=r.int("tps", minimum=1, maximum=10**6,
                      why="a million transactions per second is beyond any Fabric network"),
            duration=duration,
            tx_number=tx_number,
            workload_module=wl.str("module", "workloads/create-asset.js", pattern=WORKLOAD_RE,
                                   what="a .js module inside Caliper's workspace (a relative "
                                        "path such as workloads/create-asset.js, no '..')"),
            workload_arguments=dict(arguments),
            rate_control=dict(rate) if rate is not None else None,
        )
        wl.done()
        r.done()
        rounds.append(rnd)
    m.done()
    return Caliper(vms=vms, processes=processes, rounds=tuple(rounds))

def read_bench(top: Fields) -> dict[str, Any]:
    """`bench:` (thresholds of the verdict), checked by the verdict's own rules."""
    m = top.map("bench")
    raw = m.get("thresholds", {})
    Thresholds.from_mapping(raw, source=m.file, path=m.where("thresholds"))
    m.done()
    return dict(raw)

def read_monitor(top: Fields) -> Monitor:
    mon = top.map("monitor")
    monitor = Monitor(
        grafana_admin_user=mon.str("grafana_admin_user", "admin", pattern=NAME_RE, what="a name"),
    )
    mon.done()
    return monitor
