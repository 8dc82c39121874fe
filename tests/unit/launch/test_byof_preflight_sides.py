"""Issue 25, items 10 and 13 (BYOF preflight): each check says which side it runs on; an
address only the VMs reach (QEMU's 10.0.2.2, the environment's own network) is never
dialled from the operator's machine; the spec can give the operator's own address for an
endpoint (fabric.launcher_hosts); the real error comes before the warnings. Every dial in
these tests is to loopback."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
from byof_testlib import export, free_port, spec_doc, tls_server, user_network, write

from fabkit.clikit import run_main
from launch.cli import cli
from launch.lifecycle import preflight
from launch.spec import byof


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("byof-sides")
    return export(user_network(tmp), tmp / "exported")


class Guard:
    """A dial that connects to loopback only and records every other address asked for."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.connect = socket.create_connection     # (the real one, before any patch)

    def __call__(self, host: str, port: int, timeout: float) -> socket.socket:
        if not ipaddress.ip_address(host).is_loopback:
            self.refused.append(host)
            raise OSError(f"test guard: {host} is not loopback")
        return self.connect((host, port), timeout=timeout)


def _doc(files: Path) -> dict:
    doc = spec_doc(files)
    doc["fabric"]["operations"] = []
    doc["fabric"]["gateways"] = doc["fabric"]["gateways"][:1]   # Org1's peer, by name
    return doc


def test_a_vm_side_address_is_not_dialled_and_the_skip_says_why(files, tmp_path) -> None:
    doc = _doc(files)
    doc["fabric"]["gateways"][0]["endpoint"] = "peer0.org1.example.com:7051"
    doc["fabric"]["hosts"] = {"peer0.org1.example.com": "10.0.2.2"}      # the host, from QEMU
    guard = Guard()
    report = preflight.run(byof.load(write(tmp_path, doc)), dial=guard, timeout=0.5)
    assert guard.refused == []
    assert report.failures == () and report.warnings == ()
    (skip,) = report.skipped
    assert skip.field == "fabric.gateways[0].endpoint"
    assert "10.0.2.2" in skip.message and "QEMU's user-mode network" in skip.message
    assert "fabric.launcher_hosts.peer0.org1.example.com" in skip.message
    # the file checks ran, and say where
    assert all(line.startswith("[this machine] ") for line in report.ok), report.ok


def test_an_address_in_the_environments_own_network_is_not_dialled(files, tmp_path) -> None:
    doc = _doc(files)
    doc["fabric"]["gateways"][0]["endpoint"] = "10.78.0.50:7051"          # network.cidr
    doc["fabric"]["gateways"][0]["tls_server_name"] = "peer0.org1.example.com"
    guard = Guard()
    report = preflight.run(byof.load(write(tmp_path, doc)), dial=guard, timeout=0.5)
    assert guard.refused == [] and [k.field for k in report.skipped] == [
        "fabric.gateways[0].endpoint"]
    assert "the environment's own network" in report.skipped[0].message


def test_launcher_hosts_gives_the_operators_own_address(files, tmp_path) -> None:
    doc = _doc(files)
    doc["fabric"]["hosts"] = {"peer0.org1.example.com": "10.0.2.2"}
    guard = Guard()
    with tls_server(files / "org1" / "server.crt", files / "org1" / "server.key") as port:
        doc["fabric"]["gateways"][0]["endpoint"] = f"peer0.org1.example.com:{port}"
        doc["fabric"]["launcher_hosts"] = {"peer0.org1.example.com": "127.0.0.1"}
        report = preflight.run(byof.load(write(tmp_path, doc)), dial=guard, timeout=2)
    assert guard.refused == [] and report.skipped == () and report.failures == ()
    (line,) = [x for x in report.ok if "presents" in x]
    assert line.startswith("[this machine] fabric.gateways[0].endpoint: ")
    assert f"peer0.org1.example.com:{port} (fabric.launcher_hosts: 127.0.0.1) presents" in line


def test_launcher_hosts_is_checked_like_hosts(files, tmp_path) -> None:
    from fabkit.errors import InputError

    doc = _doc(files)
    doc["fabric"]["launcher_hosts"] = {"peer0.org1.example.com": "localhost"}
    with pytest.raises(InputError, match=r"fabric.launcher_hosts.peer0.org1.example.com: "
                                         r"expected an IP address"):
        byof.load(write(tmp_path, doc))


def test_check_says_the_sides_and_the_error_comes_before_the_warnings(
        files, tmp_path, capsys, monkeypatch) -> None:
    guard = Guard()
    monkeypatch.setattr(preflight.socket, "create_connection",
                        lambda addr, timeout=None: guard(addr[0], addr[1], timeout or 1))
    doc = _doc(files)
    doc["fabric"]["gateways"][0]["endpoint"] = "peer0.org1.example.com:7051"
    doc["fabric"]["hosts"] = {"peer0.org1.example.com": "10.0.2.2"}
    doc["fabric"]["operations"] = [{"url": f"http://127.0.0.1:{free_port()}/metrics"}]
    path = write(tmp_path, doc)
    assert run_main(cli, ["byof", str(path), "--check"]) == 0
    got = capsys.readouterr()
    assert "ok: [this machine] fabric.msps[0].ca_cert: " in got.out
    assert "skipped: fabric.gateways[0].endpoint: peer0.org1.example.com:7051 is 10.0.2.2" \
        in got.out
    assert "warning: fabric.operations[0].url: 127.0.0.1:" in got.err
    # item 10: with a real error, it is said first and the warning after it
    doc["fabric"]["msps"][1]["ca_cert"] = str(tmp_path / "missing-ca.crt")
    assert run_main(cli, ["byof", str(write(tmp_path, doc)), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert err.index("missing-ca.crt does not exist") < err.index(
        "warning: fabric.operations[0].url")
    assert guard.refused == []


def test_render_renders_a_byof_spec(files, tmp_path, capsys) -> None:
    # issue 25, item 12: `launch render` refused a BYOF spec ("not an environment file"):
    # look before you launch holds for every spec kind
    import json as _json

    path = write(tmp_path, spec_doc(files))
    out = tmp_path / "bundle"
    assert run_main(cli, ["render", str(path), "--out", str(out)]) == 0, \
        capsys.readouterr().err
    got = capsys.readouterr()
    assert f"bundle: {out}" in got.out and "monitor" in got.out
    plan = _json.loads((out / "plan.json").read_text())
    assert plan["kind"] == "byof"
    assert sorted(p.name for p in (out / "nodes").iterdir()) == ["caliper0", "caliper1",
                                                                   "monitor"]
    assert not (out / "crypto").exists()          # the user's identities; nothing issued
    assert run_main(cli, ["render", str(path), "--out", str(out), "--rotate"]) == 2
    assert "--rotate" in capsys.readouterr().err
