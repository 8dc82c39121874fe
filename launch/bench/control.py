"""The Caliper processes of a run: caliper-worker@1..N on every worker VM and the manager
as a transient systemd unit on the first worker VM (start, stop, its journal), and when
registration fails, which workers never came (unit states, Mosquitto's connections)."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence

from fabkit.errors import ExternalError
from launch.bench.door import Door
from launch.bench.lab import Lab
from launch.spec import contract

MANAGER_UNIT = "fabperf-caliper-manager"
RUN_ROOT = "/var/lib/caliper/bench"                    # caliper's home: the manager writes here
CALIPER_BIN = f"{contract.CALIPER_WORKSPACE}/node_modules/.bin/caliper"


def worker_units(n: int) -> list[str]:
    return [contract.CALIPER_UNIT.format(index=i) for i in range(1, n + 1)]


def start_workers(door: Door, lab: Lab) -> float:
    """Restart caliper-worker@1..N on every worker VM (fresh processes for this run, none
    beyond N); returns the earliest VM time (epoch) they were started at."""
    started = []
    for host, n in lab.workers.items():
        units = " ".join(worker_units(n))
        res = door.run(host, "sudo -n systemctl stop 'caliper-worker@*.service'; "
                             "sudo -n systemctl reset-failed 'caliper-worker@*.service' "
                             "2>/dev/null; date +%s.%N; "
                             f"sudo -n systemctl start {units}")
        started.append(float(res.stdout.split()[0]))
    return min(started)


def stop_workers(door: Door, lab: Lab) -> None:
    """Stop every caliper-worker@ unit (they would finish their round otherwise)."""
    for host in lab.workers:
        door.run(host, "sudo -n systemctl stop 'caliper-worker@*.service'", check=False)


def manager_command(run_dir: str) -> str:
    """The transient unit that runs the manager (as the caliper user, in the workspace)."""
    argv = ["sudo", "-n", "systemd-run", f"--unit={MANAGER_UNIT}", "--uid=caliper",
            "--gid=caliper", f"--working-directory={contract.CALIPER_WORKSPACE}",
            "--setenv=HOME=/var/lib/caliper", "--setenv=NODE_ENV=production",
            "--property=LimitNOFILE=1048576",
            # the manager stops its workers on SIGINT (launchManager.js): make `systemctl
            # stop` send that, and give it time to tell every worker
            "--property=KillSignal=SIGINT", "--property=TimeoutStopSec=30", "--",
            CALIPER_BIN, "launch", "manager",
            f"--caliper-workspace={contract.CALIPER_WORKSPACE}",
            f"--caliper-projectconfig={contract.CALIPER_DIR}/caliper.yaml",
            f"--caliper-networkconfig={contract.CALIPER_DIR}/networkconfig.yaml",
            f"--caliper-benchconfig={run_dir}/benchmark.yaml",
            f"--caliper-report-path={run_dir}/report.html", "--caliper-flow-only-test"]
    return shlex.join(argv)


def start_manager(door: Door, lab: Lab, run_dir: str, benchmark_text: str) -> float:
    """Upload the benchmark config and start the manager; returns the VM's start time."""
    host = lab.manager_host
    busy = door.run(host, f"sudo -n systemctl is-active --quiet {MANAGER_UNIT}", check=False)
    if busy.ok:
        raise ExternalError(f"a benchmark is already running on {host} ({MANAGER_UNIT} is "
                            "active)", hint=f"`launch ssh {lab.name} {host} -- sudo systemctl "
                                            f"stop {MANAGER_UNIT}` ends it")
    door.run(host, f"sudo -n systemctl reset-failed {MANAGER_UNIT} 2>/dev/null; "
                   f"sudo -n install -d -o caliper -g caliper -m 0750 {shlex.quote(run_dir)} && "
                   f"sudo -n tee {shlex.quote(run_dir + '/benchmark.yaml')} >/dev/null",
             input=benchmark_text)
    res = door.run(host, f"date +%s.%N; {manager_command(run_dir)}")
    return float(res.stdout.split()[0])


def stop_manager(door: Door, lab: Lab) -> None:
    door.run(lab.manager_host, f"sudo -n systemctl stop {MANAGER_UNIT}", check=False)


def manager_journal(door: Door, lab: Lab, since: float) -> str:
    return door.run(lab.manager_host, f"sudo -n journalctl -u {MANAGER_UNIT} -o short-unix "
                                      f"--no-pager --since @{int(since) - 1}").stdout


def manager_active(door: Door, lab: Lab) -> bool:
    res = door.run(lab.manager_host, f"sudo -n systemctl is-active {MANAGER_UNIT}", check=False)
    return res.stdout.strip() in ("active", "activating")


# --- who registered ---------------------------------------------------------------------

_CONNECT = re.compile(r"New client connected from ([0-9a-fA-F.:]+?):\d+ as (\S+)")

_GONE = re.compile(r"Client (\S+) (?:disconnected|closed its connection|has exceeded)")


def mqtt_clients(mosquitto_log: str) -> Counter[str]:
    """Connected MQTT clients per address, from Mosquitto's log lines."""
    where: dict[str, str] = {}
    for line in mosquitto_log.splitlines():
        if m := _CONNECT.search(line):
            where[m.group(2)] = m.group(1)
        elif m := _GONE.search(line):
            where.pop(m.group(1).rstrip("."), None)
    return Counter(where.values())


def missing_workers(lab: Lab, unit_states: Mapping[str, Sequence[str]],
                    clients: Counter[str]) -> list[str]:
    """One line per worker VM that has fewer processes connected than asked, naming the
    units that are not running."""
    out = []
    for w in lab.plan.workers:
        n = lab.workers[w.host]
        states = list(unit_states.get(w.host, ()))
        connected = clients.get(w.address, 0) - (1 if w.host == lab.manager_host else 0)
        bad = [f"caliper-worker@{i} ({s})" for i, s in enumerate(states, 1) if s != "active"]
        if connected >= n and not bad:
            continue
        line = f"{w.host} ({w.address}): {max(0, connected)} of {n} worker processes " \
               "connected to Mosquitto"
        if bad:
            line += "; not running: " + ", ".join(bad)
        if not states:
            line += "; unit states unknown (SSH failed)"
        out.append(line)
    return out


def diagnose_registration(door: Door, lab: Lab, since: float) -> list[str]:
    """missing_workers() from the VMs' unit states and Mosquitto's log on the monitor."""
    states: dict[str, list[str]] = {}
    for host, n in lab.workers.items():
        res = door.run(host, "sudo -n systemctl is-active " + " ".join(worker_units(n)) + "; true",
                       check=False)
        if res.ok:
            states[host] = res.stdout.split()
    mq = door.run(lab.plan.monitor.name,
                  f"sudo -n journalctl -u mosquitto -o cat --no-pager --since @{int(since) - 1}",
                  check=False)
    found = missing_workers(lab, states, mqtt_clients(mq.stdout))
    return found or ["every worker unit runs and is connected, yet the manager did not count "
                     f"{lab.total_workers} registrations: see the manager log"]
