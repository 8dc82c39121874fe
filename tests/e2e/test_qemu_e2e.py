"""The local QEMU path end to end: base image -> real bake -> launch -> checks -> down.

Slow (tens of minutes under TCG on 2 cores); marked e2e. The base image and the bakes use
the repository's build/ (they are content-addressed caches: an unchanged input skips the
work); every launched environment lives under pytest's tmp_path.

Wall times of each phase are printed at the end and written as JSON to
$FABPERF_E2E_TIMINGS when that is set.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from fabkit import runner
from launch.machines import ssh
from launch.machines.providers.base import HostRequest, ProviderContext
from launch.machines.providers.qemu import QemuProvider, scan_processes
from launch.machines.ready import Layer, NotReady, Timeouts
from launch.machines.state import StateStore
from launch.render import cloudinit

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REPO_BUILD = REPO / "build"
# Behind the TLS-intercepting proxy of the build machines the guests need its CA: the host's
# locally added CAs go into the base image (a no-op on machines without any).
HOST_EXTRA_CAS = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session", autouse=True)
def _report_timings():
    yield
    if not TIMINGS:
        return
    lines = [f"  {k:<34} {v:8.1f} s" for k, v in TIMINGS.items()]
    print("\nfabperf e2e phase wall times:\n" + "\n".join(lines))
    out = os.environ.get("FABPERF_E2E_TIMINGS")
    if out:
        Path(out).write_text(json.dumps(TIMINGS, indent=2) + "\n")


class timed:
    """Record the wall time of a phase in TIMINGS."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> timed:
        self.t = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = round(time.monotonic() - self.t, 1)


def cli(prog: str, *args: str | os.PathLike[str], check: bool = True, timeout: float = 3600,
        log: Path | None = None, env: dict[str, str] | None = None) -> runner.Completed:
    """Run the bake or launch console script of this venv."""
    return runner.run([BIN / prog, *args], check=check, timeout=timeout, log_path=log,
                      what=f"{prog} {args[0]}", env=env)


# --- images ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def base_image() -> Path:
    """The debootstrap base image (cached by content)."""
    cas = [a for ca in HOST_EXTRA_CAS for a in ("--extra-ca", str(ca))]
    with timed("base image (bake base-image)"):
        res = cli("bake", "base-image", *cas, "--output", "json", timeout=1800)
    return Path(json.loads(res.stdout)["path"])


def bake(image: str, tmp: Path, sets: tuple[str, ...] = ()) -> Path:
    """`bake build --provider qemu --image IMAGE [--set ...]` for real; the baked qcow2."""
    with timed(f"bake {image} (packer qemu)"):
        cli("bake", "build", "--provider", "qemu", "--image", image,
            *[a for s in sets for a in ("--set", s)], timeout=3600,
            log=tmp / f"bake-{image}.log")
    doc = json.loads((REPO_BUILD / "manifest.json").read_text())
    path = Path(doc["images"][image]["qemu"]["artifact"]["path"])
    path = path if path.is_absolute() else REPO / path
    assert path.is_file(), path
    return path


# Fabric's source: FABPERF_FABRIC_SOURCE (a `git archive` tarball or a checkout: .ci/run
# passes the shared v3.0.0 tarball), else the image's default (git at FABRIC_REF).
FABRIC_SOURCE = os.environ.get("FABPERF_FABRIC_SOURCE", "")


@pytest.fixture(scope="session")
def fabric_image(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sets = (f"fabric-node.FABRIC_SOURCE={FABRIC_SOURCE}",) if FABRIC_SOURCE else ()
    return bake("fabric-node", tmp_path_factory.mktemp("bake"), sets=sets)


@pytest.fixture(scope="session")
def caliper_image(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake("caliper-worker", tmp_path_factory.mktemp("bake"))


@pytest.fixture(scope="session")
def monitor_image(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Grafana's apt repository is unreachable here: the monitor is baked without Grafana.
    return bake("monitor", tmp_path_factory.mktemp("bake"), sets=("GRAFANA_SOURCE=none",))


# --- environments ------------------------------------------------------------------------

def tagged_vms(env: str) -> list[int]:
    """Pids of QEMU processes tagged with this environment."""
    return [p.pid for p in scan_processes()
            if any(a.startswith(f"fabperf:{env}:") for a in p.argv)]


def launch_ssh(bdir: Path, env: str, host: str, command: str) -> runner.Completed:
    return cli("launch", "ssh", env, host, "--build-dir", bdir, "--", "bash", "-c", command,
               check=False, timeout=300)


def down_and_check_clean(bdir: Path, env: str) -> None:
    edir = bdir / "environments" / env
    with timed(f"{env}: launch down"):
        cli("launch", "down", env, "--build-dir", bdir, timeout=300)
    assert tagged_vms(env) == []
    assert not (edir / "hosts").exists()            # overlays and seeds
    assert list(edir.rglob("*.qcow2")) == [] and list(edir.rglob("seed.iso")) == []
    assert not (edir / "state.json").exists()
    again = cli("launch", "down", env, "--build-dir", bdir, timeout=300)   # idempotent
    assert again.returncode == 0


# --- tests -------------------------------------------------------------------------------

def test_a_vm_that_never_finishes_cloud_init_names_host_and_serial_tail(base_image, tmp_path):
    """Failure path on a real VM: runcmd blocks, the cloud-init layer times out."""
    edir = tmp_path / "environments" / "hang"
    store = StateStore(edir)
    provider = QemuProvider(ProviderContext("hang", edir, store, {"accel": "tcg"}))
    keys = ssh.ensure_keypair(edir / "ssh", "fabperf-hang")
    req = HostRequest("stuck0", ("caliper",), str(base_image), 1024, 2)
    try:
        provider.reserve([req])
        store.update(ssh_key=str(keys.private_key), nonce="never")
        user_data = (b"#cloud-config\n"
                     b"runcmd:\n  - [sh, -c, 'echo fabperf-hang-test; sleep 100000']\n")
        with timed("hang: create + ssh + cloud-init timeout"):
            provider.create(req, user_data)
            with pytest.raises(NotReady) as exc:
                provider.wait_ready(["stuck0"], "never", Timeouts(ssh=900, cloud_init=45))
        err = str(exc.value)
        assert exc.value.layer is Layer.CLOUD_INIT
        assert "host stuck0" in err and "did not finish within 45s" in err
        assert "console (last" in err and "fabperf-hang-test" in err   # the serial log tail
        assert store.load().hosts["stuck0"].phase == "failed"
    finally:
        provider.destroy()
    assert tagged_vms("hang") == []


@pytest.fixture(scope="session")
def local_env(fabric_image: Path, caliper_image: Path, monitor_image: Path,
              tmp_path_factory: pytest.TempPathFactory):
    """environments/local.yaml, launched once for real (fabric, caliper, monitor VMs) and
    bootstrapped; every test below looks at it; torn down (and checked clean) at the end."""
    tmp = tmp_path_factory.mktemp("local")
    env = "e2e-local"
    bdir = tmp / "build"
    doc = yaml.safe_load((REPO / "environments" / "local.yaml").read_text())
    doc["name"] = env
    doc["settings"] = {"accel": "tcg", "cpus": 2, "memory_mb": 1536,
                       "hosts": {"fabric": {"memory_mb": 2560}}}
    doc["images"] = {"fabric-node": str(fabric_image), "caliper-worker": str(caliper_image),
                     "monitor": str(monitor_image)}
    spec = tmp / f"{env}.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    log = tmp / "up.log"
    try:
        with timed("local: launch up (ready + bootstrap)"):
            res = cli("launch", "up", spec, "--build-dir", bdir, "--output", "json",
                      timeout=3600, log=log)
        yield {"env": env, "bdir": bdir, "spec": spec, "up": json.loads(res.stdout),
               "log": log.read_text(), "edir": bdir / "environments" / env}
    finally:
        down_and_check_clean(bdir, env)


def test_launch_up_bootstraps_the_channel_and_the_chaincode(local_env):
    env, bdir, edir = local_env["env"], local_env["bdir"], local_env["edir"]
    up = local_env["up"]
    assert up["changed"] is True
    TIMINGS.update({f"local: up {k}": v for k, v in up["timings"].items()})
    # the progress lines the bootstrap job printed, relayed by `launch up`
    for line in ("orderer0.example.com joined mychannel", "peer0.org1.example.com joined "
                 "mychannel", "fixed-asset committed, sequence 1", "VALID in block"):
        assert line in local_env["log"], line
    state = json.loads((edir / "state.json").read_text())
    assert state["bootstrap"]["nonce"] == state["nonce"]
    pkg = json.loads((edir / "bundle/fabric/bootstrap.json").read_text())
    (cc,) = pkg["channels"][0]["chaincodes"]
    assert state["bootstrap"]["package_ids"] == {"mychannel/fixed-asset": cc["package_id"]}
    # the chaincode server runs with the package ID rendered at launch, on its own port
    out = launch_ssh(bdir, env, "fabric", "sudo -n systemctl is-active "
                     "fabric-chaincode@mychannel-fixed-asset.service fabric-peer.service "
                     "fabric-orderer.service; sudo -n ss -ltnH 'sport = :9999'")
    assert out.stdout.split()[:3] == ["active"] * 3, out.stdout
    assert "127.0.0.1:9999" in out.stdout

    # a new transaction through the gateway commits VALID and reads back
    with timed("local: one more transaction through the gateway"):
        tx = launch_ssh(bdir, env, "fabric", "sudo -n fabperf-bootstrap smoke e2e-asset-1")
    assert tx.returncode == 0, tx.stdout + tx.stderr
    doc = json.loads(tx.stdout.strip().splitlines()[-1])
    assert doc["status"] == "VALID" and doc["read"]["id"] == "e2e-asset-1", doc
    assert doc["read"]["owner"] == "Org1MSP" and doc["read"]["bytes"] == 100

    # peer and orderer at the same height (the peer may trail for a moment)
    deadline = time.monotonic() + 60
    while True:
        status = json.loads(cli("launch", "status", env, "--build-dir", bdir, "--output",
                                "json", timeout=300).stdout)
        heights = {n["node"]: n["height"] for n in status["fabric"]["nodes"]}
        if len(set(heights.values())) == 1 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert status["fabric"]["state"] == "bootstrapped"
    assert set(heights) == {"orderer0.example.com", "peer0.org1.example.com"}
    assert len(set(heights.values())) == 1 and min(heights.values()) >= doc["block"] + 1, \
        heights
    assert {h["name"]: (h["alive"], h["phase"]) for h in status["hosts"]} == \
        {h: (True, "ready") for h in ("fabric", "caliper", "monitor")}

    # the job again on the bootstrapped network: exit 0, nothing done
    again = launch_ssh(bdir, env, "fabric", "sudo -n fabperf-bootstrap run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to do (already bootstrapped)" in again.stdout
    # a second `launch up` changes nothing
    with timed("local: second launch up"):
        second = json.loads(cli("launch", "up", local_env["spec"], "--build-dir", bdir,
                                "--output", "json").stdout)
    assert second["changed"] is False


def test_caliper_worker_files_services_and_network(local_env):
    env, bdir, edir = local_env["env"], local_env["bdir"], local_env["edir"]
    state = json.loads((edir / "state.json").read_text())
    addresses = {h: state["hosts"][h]["address"] for h in state["hosts"]}
    assert addresses == {"fabric": "10.77.0.10", "caliper": "10.77.0.11",
                         "monitor": "10.77.0.12"}   # the plan's
    # (a) every file of the rendered user-data landed with its owner and mode
    for h in ("caliper", "fabric"):
        ud = yaml.safe_load(cloudinit.decode((edir / "bundle" / "nodes" / h / "user-data")
                                             .read_bytes()))
        wanted = {f["path"]: (f.get("owner", "root:root"),
                              int(str(f.get("permissions", "0644")), 8))
                  for f in ud["write_files"]}
        out = launch_ssh(bdir, env, h, "sudo -n stat -c '%n|%U:%G|%a' " + " ".join(wanted))
        assert out.returncode == 0, out.stderr
        got = {p: (o, int(m, 8)) for p, o, m in (ln.split("|") for ln in out.stdout.split())}
        assert got == wanted
    # (b) the worker reaches its gateway peer and the broker at their planned addresses
    out = launch_ssh(bdir, env, "caliper",
                     "ip -4 -o addr show eth0; timeout 5 bash -c "
                     "'</dev/tcp/peer0.org1.example.com/7051' && echo peer-ok; timeout 5 "
                     f"bash -c '</dev/tcp/{addresses['monitor']}/1883' && echo mqtt-ok")
    assert "inet 10.77.0.11/24" in out.stdout, out.stdout + out.stderr
    assert "peer-ok" in out.stdout and "mqtt-ok" in out.stdout, out.stdout + out.stderr
    # (c) the role's services started, and the node's health check said so
    out = launch_ssh(bdir, env, "caliper", "sudo -n systemctl is-active "
                     "caliper-worker@1.service caliper-worker@2.service; "
                     "sudo -n cat /var/lib/fabperf/ready")
    assert out.stdout.split()[:2] == ["active", "active"], out.stdout
    assert out.stdout.split()[2] == state["nonce"]
    with timed("local: launch validate"):
        # goss specs already passed in the bakes; over SSH under TCG they take minutes
        val = cli("launch", "validate", env, "--no-goss", "--build-dir", bdir,
                  "--output", "json", check=False, timeout=1200)
    report = json.loads(val.stdout)
    failed = [(h["host"], c["name"], c["detail"]) for h in report["hosts"]
              for c in h["checks"] if not c["ok"]]
    assert not failed and val.returncode == 0


def test_monitor_answers(local_env):
    state = json.loads((local_env["edir"] / "state.json").read_text())
    ports = state["hosts"]["monitor"]["ports"]
    for guest in ("9090", "9091"):   # Prometheus, Pushgateway (through 127.0.0.1 only)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[guest]}/-/ready",
                                    timeout=10) as r:
            assert r.status == 200
    with socket.create_connection(("127.0.0.1", ports["1883"]), timeout=10) as s:
        # MQTT CONNECT (protocol 4, clean session, keepalive 10, client id "e2e")
        s.sendall(bytes([0x10, 15, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 3]) + b"e2e")
        assert s.recv(4)[:1] == b"\x20"                      # CONNACK


def test_launch_bench_two_rounds_verdicts_ledger_and_panels(local_env, tmp_path):
    """`launch bench` on the bootstrapped local environment: two 30 s rounds at a rate the
    TCG machine carries; the bundle holds every part, summary.json agrees with Caliper's
    report.html, the ledger cross-check is within 2 %, a verdict per round; afterwards every
    Grafana panel's PromQL returns data from the monitor's Prometheus."""
    from launch.bench import panels, results

    env, bdir = local_env["env"], local_env["bdir"]
    out = tmp_path / "results"
    with timed("local: launch bench (2 rounds x 30 s at 4 TPS)"):
        res = cli("launch", "bench", env, "--tps", "4", "--duration", "30", "--build-dir",
                  bdir, "--results-dir", out, "--output", "json", timeout=3600,
                  log=tmp_path / "bench.log", check=False)
    assert res.returncode == 0, (tmp_path / "bench.log").read_text()[-4000:]
    doc = json.loads(res.stdout)
    bundle = Path(doc["bundle"])
    assert bundle.is_dir() and bundle.parent.parent == out
    assert results.check_bundle(bundle) == []
    summary = json.loads((bundle / "summary.json").read_text())
    assert [r["label"] for r in summary["rounds"]] == ["create", "read"]
    for r in summary["rounds"]:
        assert r["status"] == "completed", r
        # judged (not failing, not inconclusive), and every rule without data says what is
        # missing and where it should have come from (check_bundle asserts it too)
        assert r["verdict"]["verdict"] in ("headroom", "fabric-bound", "load-generator-bound")
        assert set(r["verdict"]["missing"]) == set(r["verdict"]["missing_data"]), r["verdict"]
        assert not [c for c in r["verdict"]["checks"] if c["fired"] is None and c["required"]
                    and c["missing"]], r["verdict"]
        assert r["succeeded"] > 0 and r["failed"] <= 0.01 * (r["succeeded"] + r["failed"]), r
        # goodput first: what succeeded per second of the window, next to Caliper's figure
        assert r["goodput_tps"] == pytest.approx(r["succeeded"] / r["window"]["seconds"],
                                                 rel=0.01), r
        assert r["channel"] == "mychannel", r
    create, read = summary["rounds"]
    assert create["ledger"]["flagged"] is False, create["ledger"]
    assert create["ledger_goodput_tps"] == pytest.approx(create["goodput_tps"], rel=0.05)
    # the read round only evaluates (its workload module says so): its channel gained about
    # nothing, and no ledger goodput is claimed for it
    assert read["ledger"]["read_only"] is True and read["ledger"]["flagged"] is False, read
    assert read["ledger_goodput_tps"] is None
    TIMINGS.update({f"bench: {k}": v for k, v in (summary.get("timings") or {}).items()
                    if isinstance(v, (int, float))})
    # the text table names a verdict per round and leads with goodput (as a person sees it)
    table = cli("launch", "results", "show", str(bundle)).stdout
    assert "create" in table and "read" in table and create["verdict"]["verdict"] in table
    assert "goodput TPS" in table and "throughput TPS (incl. failed)" in table
    print(table)     # the closing note of issue 20 reports it

    state = json.loads((local_env["edir"] / "state.json").read_text())
    prom = f"http://127.0.0.1:{state['hosts']['monitor']['ports']['9090']}"
    # local.yaml: one Raft orderer (the BFT and cluster panels are empty by design there)
    panels.assert_panels_have_data(prom, topology=panels.Topology("etcdraft", 1))


def test_down_of_an_unknown_environment_exits_2(tmp_path):
    res = cli("launch", "down", "never-launched", "--build-dir", tmp_path, check=False)
    assert res.returncode == 2 and "unknown environment" in res.stderr


# --- BYOF: the local environment as a network fabperf did not render for it ---------------

def test_byof_benchmarks_a_network_known_only_by_its_exported_files(
        local_env, caliper_image, monitor_image, tmp_path):
    """`launch byof` + `launch bench` against local_env's Fabric VM, addressed only through
    what a user exports: the peer's TLS CA and its MSP's CA (`launch ssh ... cat` on the
    Fabric VM), Org1's User1 (from its client machine, local_env's worker VM), and where the
    peer and its operations endpoint are reachable (the forwarded ports `launch status`
    shows). The BYOF VMs sit on their own QEMU switch: they reach the peer through the
    host (10.0.2.2 in QEMU user networking) under its own name, by a host alias."""
    from launch.bench import results

    env, bdir = local_env["env"], local_env["bdir"]
    byof_env = "e2e-byof"
    files = tmp_path / "exported"
    files.mkdir()

    def export(host: str, command: str) -> str:
        out = launch_ssh(bdir, env, host, command)
        assert out.returncode == 0 and out.stdout.strip(), out.stdout + out.stderr
        return out.stdout

    (files / "tlsca.crt").write_text(export("fabric", "sudo -n cat /etc/fabperf/peer/tls/ca.crt"))
    (files / "ca.crt").write_text(export(
        "fabric", "sudo -n sh -c 'cat /etc/fabperf/peer/msp/cacerts/*.pem'"))
    nc = yaml.safe_load(export("caliper", "sudo -n cat /etc/fabperf/caliper/networkconfig.yaml"))
    ident = nc["organizations"][0]["identities"]["certificates"][0]
    assert ident["name"] == "User1"
    (files / "user1.crt").write_text(ident["clientSignedCert"]["pem"])
    key = files / "user1.key"
    key.touch(mode=0o600)
    key.write_text(ident["clientPrivateKey"]["pem"])
    status = json.loads(cli("launch", "status", env, "--build-dir", bdir, "--output",
                            "json").stdout)
    ports = next(h for h in status["hosts"] if h["name"] == "fabric")["ports"]
    peer_port, ops_port = ports["7051"], ports["9443"]

    def spec(name: str, endpoint: str, ops: str, **gateway: str) -> Path:
        doc = {
            "kind": "byof", "name": name, "provider": "qemu",
            "settings": {"accel": "tcg", "cpus": 2, "memory_mb": 1536},
            "network": {"cidr": "10.78.0.0/24"},
            "images": {"caliper-worker": str(caliper_image), "monitor": str(monitor_image)},
            "fabric": {
                "version": "3.0.0", "channel": "mychannel", "chaincode": "fixed-asset",
                "msps": [{"msp_id": "Org1MSP", "ca_cert": "exported/ca.crt",
                          "identities": [{"name": "User1", "cert": "exported/user1.crt",
                                          "key": "exported/user1.key"}]}],
                "gateways": [{"endpoint": endpoint, "msp_id": "Org1MSP",
                              "tls_ca": "exported/tlsca.crt", **gateway}],
                # cpus: the Fabric VM's vCPUs (local_env's settings), for the fabric-cpu rule
                "operations": [{"url": ops, "host": "peer0.org1.example.com", "cpus": 2}],
                "hosts": {"peer0.org1.example.com": "10.0.2.2"},
            },
            "caliper": {"workers": {"vms": 1, "processes": 2}, "rounds": [{
                "label": "create", "tps": 4, "duration": 30,
                "workload": {"module": "workloads/create-asset.js",
                             # ids of their own: local_env's bench created asset_0_*
                             "arguments": {"payloadSize": 100, "idPrefix": "byof"}}}]},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    # the preflight's TLS check against the real peer, dialled from this machine (its
    # forwarded port; the name the certificate carries through the server-name override)
    probe = spec("e2e-byof-probe", f"127.0.0.1:{peer_port}",
                 f"http://127.0.0.1:{ops_port}/metrics",
                 tls_server_name="peer0.org1.example.com")
    checked = cli("launch", "byof", probe, "--check", "--output", "json", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["failures"] == [], report
    assert any(f"127.0.0.1:{peer_port} presents" in line and "for peer0.org1.example.com"
               in line for line in report["ok"]), report
    assert any("CN=User1@org1.example.com" in line for line in report["ok"]), report

    # the BYOF environment: the workers dial the peer by its own name, aliased to the host
    path = spec(byof_env, f"peer0.org1.example.com:{peer_port}",
                f"http://peer0.org1.example.com:{ops_port}/metrics")
    try:
        with timed("byof: launch byof (caliper + monitor)"):
            up = cli("launch", "byof", path, "--build-dir", bdir, "--output", "json",
                     timeout=3600, log=tmp_path / "byof.log", check=False)
        assert up.returncode == 0, (tmp_path / "byof.log").read_text()[-4000:]
        assert sorted(h["name"] for h in json.loads(up.stdout)["hosts"]) == ["caliper0",
                                                                            "monitor"]
        st = json.loads(cli("launch", "status", byof_env, "--build-dir", bdir, "--output",
                            "json").stdout)
        assert st["fabric"]["state"].startswith("byof")
        alias = launch_ssh(bdir, byof_env, "caliper0", "getent hosts peer0.org1.example.com")
        assert alias.stdout.split()[0] == "10.0.2.2", alias.stdout + alias.stderr

        out = tmp_path / "results"
        with timed("byof: launch bench (1 round x 30 s)"):
            res = cli("launch", "bench", byof_env, "--build-dir", bdir, "--results-dir", out,
                      "--output", "json", timeout=3600, log=tmp_path / "bench.log",
                      check=False)
        assert res.returncode == 0, (tmp_path / "bench.log").read_text()[-4000:]
        bundle = Path(json.loads(res.stdout)["bundle"])
        assert results.check_bundle(bundle) == []
        summary = json.loads((bundle / "summary.json").read_text())
        (rnd,) = summary["rounds"]
        assert rnd["status"] == "completed" and rnd["succeeded"] > 0, rnd
        # the user's operations metrics were scraped: channel seen, ledger cross-checked
        assert rnd["ledger"]["applicable"] is True and rnd["ledger"]["flagged"] is False
        assert "peer0.org1.example.com mychannel" in rnd["ledger"]["per_peer"], rnd["ledger"]
        check = json.loads((bundle / "logs" / "byof-check.json").read_text())
        assert check["channel_checked"] is True, check
        # the Fabric side's CPU from the peer's own operations metrics (no exporter there)
        cpu = next(c for c in rnd["verdict"]["checks"] if c["rule"] == "fabric-cpu")
        assert cpu["fired"] is not None and cpu["where"] == "peer0.org1.example.com/peer", cpu
        assert any("reads the operations endpoints' process CPU" in n for n in summary["notes"])
    finally:
        down_and_check_clean(bdir, byof_env)
