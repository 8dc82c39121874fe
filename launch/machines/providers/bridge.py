"""The Linux bridge of one nspawn environment: its name, its address, and what may not clash.

One bridge per environment carries the spec's CIDR; every container joins it through
`systemd-nspawn --network-bridge` (its side is `host0`), and the operator's machine holds
one address on it (the first of the CIDR) so it reaches sshd, Prometheus and the
operations ports of the containers directly. Nothing is routed or NATed: the containers
reach each other and this machine's address on the bridge, nothing else.

Before a bridge is made, `conflicts` checks the machine's links, addresses and routes (as
`ip -j` prints them): a link of that name that is not ours, or a network that overlaps the
CIDR, is bad input (nothing is made).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabkit import runner

# IFNAMSIZ is 16 with the NUL: 15 characters; no '/' or whitespace (kernel rules), kept to
# a plain set so the name is safe on any command line
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
GATEWAY_OFFSET = 1              # the operator's address: the first of the CIDR


def default_name(tag: str) -> str:
    """fp-<env id>: 11 characters, unique per environment directory."""
    return tag[:15]


def operator_address(cidr: str) -> str:
    """The operator's machine's address on the bridge, with its prefix (10.77.0.1/24)."""
    net = ipaddress.IPv4Network(cidr)
    return f"{net.network_address + GATEWAY_OFFSET}/{net.prefixlen}"


@dataclass(frozen=True)
class Conflict:
    """Why a bridge cannot be made: which setting, and what holds it."""

    field: str            # "bridge" or "network.cidr"
    expected: str
    found: str


def conflicts(name: str, cidr: str, links: Sequence[Mapping[str, Any]],
              addrs: Sequence[Mapping[str, Any]], routes: Sequence[Mapping[str, Any]],
              ours: bool = False) -> list[Conflict]:
    """What stops ``name`` carrying ``cidr`` on this machine (``ip -j link``, ``ip -j addr``,
    ``ip -j route`` output). ``ours``: the bridge of this environment already exists (its
    own addresses and routes are no conflict)."""
    found: list[Conflict] = []
    net = ipaddress.IPv4Network(cidr)
    if not ours and any(link.get("ifname") == name for link in links):
        found.append(Conflict("bridge", "a link name not in use on this machine",
                              f"{name} (a link of that name exists)"))
    for a in addrs:
        dev = str(a.get("ifname", ""))
        if ours and dev == name:
            continue
        for info in a.get("addr_info", ()):
            if info.get("family") != "inet":
                continue
            local = ipaddress.IPv4Network(f"{info['local']}/{info.get('prefixlen', 32)}",
                                          strict=False)
            if local.overlaps(net):
                found.append(Conflict("network.cidr", "a network no interface of this "
                                      "machine is on",
                                      f"{cidr} overlaps {info['local']}/"
                                      f"{info.get('prefixlen', 32)} on {dev}"))
    for r in routes:
        dst, dev = str(r.get("dst", "")), str(r.get("dev", ""))
        # a kernel route mirrors an address (reported above)
        if dst in ("", "default") or (ours and dev == name) or r.get("protocol") == "kernel":
            continue
        try:
            rnet = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if rnet.overlaps(net):
            found.append(Conflict("network.cidr", "a network this machine has no route to",
                                  f"{cidr} overlaps the route {dst} via {dev or '?'}"))
    return found


def _ip_json(*args: str, log_path: Path | None = None) -> list[dict[str, Any]]:
    res = runner.run(["ip", "-j", *args], log_path=log_path, what="ip")
    doc = json.loads(res.stdout or "[]")
    return doc if isinstance(doc, list) else []


def machine_conflicts(name: str, cidr: str, ours: bool,
                      log_path: Path | None = None) -> list[Conflict]:
    """conflicts() against this machine now."""
    return conflicts(name, cidr, _ip_json("link", "show", log_path=log_path),
                     _ip_json("-4", "addr", "show", log_path=log_path),
                     _ip_json("-4", "route", "show", "table", "all", log_path=log_path),
                     ours)


def exists(name: str, sys_net: Path = Path("/sys/class/net")) -> bool:
    """A bridge of that name exists (a link with a bridge/ directory)."""
    return (sys_net / name / "bridge").is_dir()


def ports(name: str, sys_net: Path = Path("/sys/class/net")) -> list[str]:
    """The links enslaved to the bridge (the containers' veths)."""
    d = sys_net / name / "brif"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def create(name: str, log_path: Path | None = None) -> None:
    """Make the bridge (`configure` addresses it and brings it up)."""
    runner.run(["ip", "link", "add", "name", name, "type", "bridge"], log_path=log_path,
               what=f"bridge {name}")


def configure(name: str, address: str, log_path: Path | None = None) -> None:
    """The operator's address on the bridge (once) and the link up."""
    have = _ip_json("-4", "addr", "show", "dev", name, log_path=log_path)
    local = address.split("/")[0]
    if not any(i.get("local") == local for a in have for i in a.get("addr_info", ())):
        runner.run(["ip", "addr", "add", address, "dev", name], log_path=log_path,
                   what=f"address of {name}")
    runner.run(["ip", "link", "set", name, "up"], log_path=log_path, what=f"{name} up")


def delete(name: str, log_path: Path | None = None) -> bool:
    """Remove the bridge (False: there was none)."""
    if not exists(name):
        return False
    runner.run(["ip", "link", "del", name], log_path=log_path, what=f"delete bridge {name}")
    return True
