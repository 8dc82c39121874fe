"""BYOF: the spec (launch.spec.byof), its preflight (launch.lifecycle.preflight) against a real
local TLS server, the rendered bundle (launch.render.byof_bundle) and `launch byof` through the
CLI."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
import yaml
from byof_testlib import export, free_port, spec_doc, tls_server, user_network, write
from launch_testlib import EXAMPLES, cloud_config, files_of

from fabkit.clikit import run_main
from fabkit.errors import InputError
from launch.cli import cli
from launch.lifecycle import preflight
from launch.render import bundle as render_bundle
from launch.render import plan as planner
from launch.spec import byof
from launch.spec.contract import CALIPER_DIR, PROMETHEUS_FILE_SD


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("byof")
    return export(user_network(tmp), tmp / "exported")


def _spec(tmp: Path, doc: dict) -> byof.ByofSpec:
    return byof.load(write(tmp, doc))


# --- the spec ---------------------------------------------------------------------------

def test_the_example_parses_into_frozen_models() -> None:
    spec = byof.load(EXAMPLES / "byof.yaml")
    assert spec.kind == "byof" and spec.name == "byof" and spec.channel == "mychannel"
    assert [g.endpoint for g in spec.gateways] == ["peer0.org1.example.com:7051",
                                                   "192.0.2.21:7051"]
    assert [g.fqdn for g in spec.gateways] == ["peer0.org1.example.com",
                                               "peer0.org2.example.com"]
    assert spec.gateways[0].tls_ca == (EXAMPLES / "byof/org1/tlsca.crt").resolve()
    assert spec.aliases == {"peer0.org1.example.com": "192.0.2.11"}
    ops = spec.operations
    assert [(o.scheme, o.target, o.host, o.role) for o in ops] == [
        ("http", "peer0.org1.example.com:9443", "peer0.org1.example.com", "peer"),
        ("https", "192.0.2.21:9443", "peer0.org2.example.com", "peer")]
    assert spec.caliper.vms == 2 and spec.caliper.rounds[0].label == "create"
    assert spec.channels[0].chaincodes[0].name == "fixed-asset"
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]


def _set(path: str, value):
    def change(d: dict) -> None:
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is KeyError:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return change


BAD_SPECS = {
    "no kind": (_set("kind", KeyError), "kind: expected 'byof' (a BYOF spec), found None"),
    "unknown fabric key": (_set("fabric.peers", 3),
                           "fabric.peers: expected one of the known keys"),
    "gateway of an unlisted MSP": (
        _set("fabric.gateways.1.msp_id", "Org9MSP"),
        "fabric.gateways[1].msp_id: expected one of the MSPs listed under fabric.msps"),
    "endpoint without port": (_set("fabric.gateways.0.endpoint", "peer0.org1.example.com"),
                              "fabric.gateways[0].endpoint: expected host:port"),
    "missing tls_ca": (_set("fabric.gateways.0.tls_ca", KeyError),
                       "fabric.gateways[0].tls_ca: expected a value (required field)"),
    "http with a TLS CA": (_set("fabric.operations.0.tls_ca", "x.crt"),
                           "fabric.operations[0].url: expected https:// when tls_ca"),
    "client cert without key": (
        _set("fabric.operations.1.client_key", KeyError),
        "fabric.operations[1].client_key: expected client_cert and client_key together"),
    "alias to a name": (_set("fabric.hosts", {"peer0.org1.example.com": "somewhere"}),
                        "fabric.hosts.peer0.org1.example.com: expected an IP address"),
    "provider none": (_set("provider", "none"),
                      "provider: expected a provider that starts VMs"),
    "duplicate identity": (
        _set("fabric.msps.0.identities", [{"name": "U", "cert": "a", "key": "b"},
                                          {"name": "U", "cert": "c", "key": "d"}]),
        "fabric.msps[0].identities[1].name: expected a name no other identity"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_name_the_field(case: str, tmp_path: Path) -> None:
    change, message = BAD_SPECS[case]
    doc = yaml.safe_load((EXAMPLES / "byof.yaml").read_text())
    change(doc)
    with pytest.raises(InputError) as exc:
        byof.load(write(tmp_path, doc))
    assert message in exc.value.message
    assert str(tmp_path / "byof.yaml") in exc.value.message


def test_environment_files_and_byof_specs_are_told_apart(tmp_path: Path) -> None:
    from launch.spec import env as env_spec

    assert byof.load_any(EXAMPLES / "byof.yaml").kind == "byof"
    assert byof.load_any(EXAMPLES / "local.yaml").kind == "environment"
    with pytest.raises(InputError, match="a BYOF spec .kind: byof., not an environment"):
        env_spec.load(EXAMPLES / "byof.yaml")
    with pytest.raises(InputError, match="goes to `launch up`"):
        byof.load(EXAMPLES / "local.yaml")


# --- preflight --------------------------------------------------------------------------

def _ok_doc(files: Path) -> dict:
    doc = spec_doc(files)
    doc["fabric"]["operations"] = []
    return doc


def test_preflight_passes_on_the_users_files(files: Path, tmp_path: Path) -> None:
    doc = _ok_doc(files)
    with tls_server(files / "org1" / "server.crt", files / "org1" / "server.key") as port:
        doc["fabric"]["gateways"][0]["endpoint"] = f"peer0.org1.example.com:{port}"
        doc["fabric"]["hosts"] = {"peer0.org1.example.com": "127.0.0.1",
                                  "gw2.example.net": "127.0.0.1"}
        with tls_server(files / "org2" / "server.crt", files / "org2" / "server.key") as p2:
            # Org2 dialled by a name its certificate lacks: the server-name override
            doc["fabric"]["gateways"][1]["endpoint"] = f"gw2.example.net:{p2}"
            report = preflight.run(_spec(tmp_path, doc))
    assert report.failures == () and report.warnings == (), report
    text = "\n".join(report.ok)
    assert "fabric.msps[0].identities[0]: " in text and "CN=User1@org1.example.com" in text
    assert f"peer0.org1.example.com:{port} (alias 127.0.0.1) presents" in text
    assert f"gw2.example.net:{p2} (alias 127.0.0.1) presents" in text
    assert "for peer0.org2.example.com" in text


def test_a_missing_file_is_named_by_its_field(files: Path, tmp_path: Path) -> None:
    doc = _ok_doc(files)
    doc["fabric"]["msps"][0]["identities"][0]["cert"] = str(tmp_path / "gone.pem")
    doc["fabric"]["gateways"] = doc["fabric"]["gateways"][:1]
    doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"
    report = preflight.run(_spec(tmp_path, doc))
    assert [str(f) for f in report.failures] == [
        f"fabric.msps[0].identities[0]: file {tmp_path / 'gone.pem'} does not exist"]
    with pytest.raises(InputError) as exc:
        report.raise_for_failures()
    assert "nothing was created" in exc.value.message and exc.value.exit_code == 2


def test_a_key_that_does_not_match_its_certificate(files: Path, tmp_path: Path) -> None:
    doc = _ok_doc(files)
    doc["fabric"]["msps"][0]["identities"][0]["key"] = str(files / "org1" / "server.key")
    doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"
    doc["fabric"]["gateways"][1]["endpoint"] = f"127.0.0.1:{free_port()}"
    (failure,) = preflight.run(_spec(tmp_path, doc)).failures
    assert failure.field == "fabric.msps[0].identities[0]"
    assert f"the key {files / 'org1' / 'server.key'} does not match the certificate" \
        in failure.message and "public keys differ" in failure.message


def test_an_identity_of_another_msp(files: Path, tmp_path: Path) -> None:
    doc = _ok_doc(files)
    ident = doc["fabric"]["msps"][0]["identities"][0]
    ident.update(cert=str(files / "org2" / "user1.crt"), key=str(files / "org2" / "user1.key"))
    doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"
    doc["fabric"]["gateways"][1]["endpoint"] = f"127.0.0.1:{free_port()}"
    (failure,) = preflight.run(_spec(tmp_path, doc)).failures
    assert failure.field == "fabric.msps[0].identities[0]"
    assert "is not issued by fabric.msps[0].ca_cert" in failure.message
    assert "CN=ca.org2.example.com" in failure.message and "another MSP" in failure.message


def test_a_wrong_tls_ca_for_an_endpoint(files: Path, tmp_path: Path) -> None:
    doc = _ok_doc(files)
    doc["fabric"]["gateways"] = doc["fabric"]["gateways"][:1]
    doc["fabric"]["gateways"][0]["tls_ca"] = str(files / "org2" / "tlsca.crt")  # Org2's
    doc["fabric"]["hosts"] = {"peer0.org1.example.com": "127.0.0.1"}
    with tls_server(files / "org1" / "server.crt", files / "org1" / "server.key") as port:
        doc["fabric"]["gateways"][0]["endpoint"] = f"peer0.org1.example.com:{port}"
        report = preflight.run(_spec(tmp_path, doc))
    (failure,) = report.failures
    assert failure.field == "fabric.gateways[0].endpoint"
    assert "does not verify against" in failure.message and "org2/tlsca.crt" in \
        failure.message and "for the name peer0.org1.example.com" in failure.message


def test_a_name_not_in_the_certificate_needs_the_override(files: Path, tmp_path: Path) -> None:
    doc = _ok_doc(files)
    doc["fabric"]["gateways"] = doc["fabric"]["gateways"][1:]     # Org2, no override
    del doc["fabric"]["gateways"][0]["tls_server_name"]
    doc["fabric"]["hosts"] = {"gw2.example.net": "127.0.0.1"}
    with tls_server(files / "org2" / "server.crt", files / "org2" / "server.key") as port:
        doc["fabric"]["gateways"][0]["endpoint"] = f"gw2.example.net:{port}"
        (failure,) = preflight.run(_spec(tmp_path, doc)).failures
    assert "for the name gw2.example.net" in failure.message
    assert "Hostname mismatch" in failure.message


def test_unreachable_endpoints_are_warnings_within_a_bounded_time(files: Path,
                                                                  tmp_path: Path) -> None:
    doc = _ok_doc(files)
    with tls_server(files / "org2" / "server.crt", files / "org2" / "server.key",
                    speak=False) as silent:
        doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"  # refused
        doc["fabric"]["gateways"][1]["endpoint"] = f"127.0.0.1:{silent}"  # never answers
        doc["fabric"]["operations"] = [{"url": f"http://127.0.0.1:{free_port()}/metrics"}]
        t = time.monotonic()
        report = preflight.run(_spec(tmp_path, doc), timeout=0.5)
        took = time.monotonic() - t
    assert report.failures == ()
    assert [w.field for w in report.warnings] == [
        "fabric.gateways[0].endpoint", "fabric.gateways[1].endpoint", "fabric.operations[0].url"]
    assert "is not reachable from the launcher" in report.warnings[0].message
    assert "the TLS handshake did not complete" in report.warnings[1].message
    assert took < 5, took


def test_operations_mtls_files_are_checked(files: Path, tmp_path: Path) -> None:
    doc = _ok_doc(files)
    doc["fabric"]["gateways"] = doc["fabric"]["gateways"][:1]
    doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"
    doc["fabric"]["operations"] = [{
        "url": f"https://127.0.0.1:{free_port()}/metrics", "tls_ca": str(files / "org1/tlsca.crt"),
        "client_cert": str(files / "org1/user1.crt"), "client_key": str(files / "org2/user1.key")}]
    (failure,) = preflight.run(_spec(tmp_path, doc)).failures
    assert failure.field == "fabric.operations[0].client_key"
    assert "does not match the certificate" in failure.message


# --- the bundle -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(files: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("byof-bundle")
    doc = spec_doc(files)
    doc["caliper"]["workers"]["vms"] = 3
    doc["fabric"]["operations"][0]["cpus"] = 4
    doc["fabric"]["operations"].append({
        "url": "https://192.0.2.21:9443/metrics", "host": "peer0.org2.example.com",
        "tls_ca": str(files / "org2/tlsca.crt"), "tls_server_name": "peer0.org2.example.com",
        "client_cert": str(files / "org2/user1.crt"), "client_key": str(files / "org2/user1.key")})
    spec = _spec(tmp, doc)
    return render_bundle.render(spec, tmp / "bundle", nonce="n" * 32, manifest_root=tmp)


def test_only_worker_vms_and_the_monitor(bundle) -> None:
    plan = bundle.plan
    assert [(h.name, [r.value for r in h.roles]) for h in plan.hosts] == [
        ("caliper0", ["caliper"]), ("caliper1", ["caliper"]), ("caliper2", ["caliper"]),
        ("monitor", ["monitor"])]
    assert plan.peers == () and plan.orderers == () and plan.bootstrap is None
    assert not (bundle.out / "crypto").exists() and not (bundle.out / "fabric").exists()
    doc = json.loads((bundle.out / "plan.json").read_text())
    assert doc["kind"] == "byof" and doc["bootstrap_host"] is None
    assert [w["gateway"] for w in doc["caliper_workers"]] == [
        "peer0.org1.example.com:7051", "192.0.2.21:7051", "peer0.org1.example.com:7051"]


def test_each_worker_vm_names_a_different_gateway(bundle, files: Path) -> None:
    configs = {}
    for w in bundle.plan.workers[:2]:
        path = bundle.out / "caliper" / f"networkconfig-{w.host}.yaml"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        configs[w.host] = yaml.safe_load(path.read_text())
    (org0,) = configs["caliper0"]["organizations"]
    (org1,) = configs["caliper1"]["organizations"]
    assert (org0["mspid"], org1["mspid"]) == ("Org1MSP", "Org2MSP")
    peer0, peer1 = org0["peers"][0], org1["peers"][0]
    assert peer0["endpoint"] != peer1["endpoint"]
    # the dialled name is in Org1's certificate; Org2 is dialled by address: the override
    assert peer0["grpcOptions"]["ssl-target-name-override"] == "peer0.org1.example.com"
    assert peer1["endpoint"] == "192.0.2.21:7051"
    assert peer1["grpcOptions"]["ssl-target-name-override"] == "peer0.org2.example.com"
    # the user's own files, inline
    assert peer1["tlsCACerts"]["pem"] == (files / "org2/tlsca.crt").read_text()
    cert = org1["identities"]["certificates"][0]
    assert cert["name"] == "User1"
    assert cert["clientSignedCert"]["pem"] == (files / "org2/user1.crt").read_text()
    assert cert["clientPrivateKey"]["pem"] == (files / "org2/user1.key").read_text()
    assert configs["caliper0"]["channels"] == [
        {"channelName": "mychannel", "contracts": [{"id": "fixed-asset"}]}]


def test_user_data_carries_aliases_identity_and_scrape_targets(bundle) -> None:
    for host in ("caliper0", "monitor"):
        doc = cloud_config(bundle.user_data[host].data)
        hosts = files_of(doc)["/etc/hosts"]["content"]
        assert "192.0.2.11\tpeer0.org1.example.com" in hosts, hosts
    worker = files_of(cloud_config(bundle.user_data["caliper1"].data))
    nc = worker[f"{CALIPER_DIR}/networkconfig.yaml"]
    assert (nc["owner"], nc["permissions"]) == ("caliper:caliper", "0600")
    assert "PRIVATE KEY" in nc["content"]
    mon = cloud_config(bundle.user_data["monitor"].data)
    mfiles = files_of(mon)
    fabric_sd = json.loads(mfiles[f"{PROMETHEUS_FILE_SD}/fabric.json"]["content"])
    assert fabric_sd == [{"targets": ["peer0.org1.example.com:9443"], "labels": {
        "environment": "byof", "host": "peer0.org1.example.com", "role": "peer",
        "node": "peer0.org1.example.com", "cpus": "4"}}]
    prom = yaml.safe_load(mfiles["/etc/prometheus/prometheus.yml"]["content"])
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert {"node", "process", "fabric", "pushgateway"} <= set(jobs)   # the baked ones
    job = jobs["fabric-byof-1"]
    assert job["scheme"] == "https" and job["static_configs"][0]["targets"] == ["192.0.2.21:9443"]
    assert job["static_configs"][0]["labels"]["host"] == "peer0.org2.example.com"
    assert job["tls_config"] == {"ca_file": "/etc/prometheus/byof/op1/ca.crt",
                                 "cert_file": "/etc/prometheus/byof/op1/client.crt",
                                 "key_file": "/etc/prometheus/byof/op1/client.key",
                                 "server_name": "peer0.org2.example.com"}
    assert job["relabel_configs"] == [{"target_label": "job", "replacement": "fabric"}]
    key = mfiles["/etc/prometheus/byof/op1/client.key"]
    assert key["permissions"] == "0600" and "PRIVATE KEY" in key["content"]
    # handed to Prometheus before any unit starts
    assert mon["runcmd"][0] == ["chown", "-R", "prometheus:", "/etc/prometheus/byof"]
    assert mon["runcmd"][1][:3] == ["systemctl", "enable", "--now"]


def test_the_bundle_passes_cloud_init_owner_rules(bundle) -> None:
    from launch.spec.contract import IMAGE_USERS, Role

    for host in bundle.plan.hosts:
        users = {u for role in host.roles for u in IMAGE_USERS[Role(role).image()]}
        for f in cloud_config(bundle.user_data[host.name].data)["write_files"]:
            user, _, group = f["owner"].partition(":")
            assert {user, group or user} <= users, (host.name, f["path"])


def test_fewer_worker_vms_than_gateways_is_a_warning(files: Path, tmp_path: Path) -> None:
    doc = spec_doc(files)
    doc["caliper"]["workers"]["vms"] = 1
    plan = planner.build(_spec(tmp_path, doc), manifest_root=tmp_path)
    assert "only the first 1 gateway(s) get load" in plan.warnings[0]


# --- the CLI ----------------------------------------------------------------------------

def test_launch_byof_check_exits_2_and_creates_nothing(files: Path, tmp_path: Path,
                                                       capsys) -> None:
    doc = _ok_doc(files)
    doc["fabric"]["msps"][1]["ca_cert"] = str(tmp_path / "missing-ca.crt")
    doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"
    doc["fabric"]["gateways"][1]["endpoint"] = f"127.0.0.1:{free_port()}"
    path = write(tmp_path, doc)
    build = tmp_path / "build"
    code = run_main(cli, ["byof", str(path), "--check", "--build-dir", str(build)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"fabric.msps[1].ca_cert: file {tmp_path / 'missing-ca.crt'} does not exist" in err
    assert "warning: fabric.gateways[0].endpoint: 127.0.0.1:" in err
    assert not build.exists()
    # and `launch byof` without --check stops at the same preflight
    code = run_main(cli, ["byof", str(path), "--build-dir", str(build)])
    assert code == 2 and not (build / "environments" / "byof").exists()


def test_launch_byof_check_json(files: Path, tmp_path: Path, capsys) -> None:
    doc = _ok_doc(files)
    doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"
    doc["fabric"]["gateways"][1]["endpoint"] = f"127.0.0.1:{free_port()}"
    code = run_main(cli, ["byof", str(write(tmp_path, doc)), "--check", "--output", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["failures"] == [] and len(out["warnings"]) == 2
    assert any("CN=User1@org2.example.com" in line for line in out["ok"])


# --- up / status / down of a BYOF environment ---------------------------------------------

@pytest.fixture
def fake_provider(monkeypatch):
    import sys

    from launch.lifecycle import up

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "providers"))
    from test_launch_up import FakeProvider

    FakeProvider.instances.clear()
    monkeypatch.setattr(up, "get_provider", lambda name, ctx: FakeProvider(ctx))
    return FakeProvider


def _launchable(files: Path, tmp: Path) -> Path:
    doc = _ok_doc(files)
    doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"
    doc["fabric"]["gateways"][1]["endpoint"] = f"127.0.0.1:{free_port()}"
    images = {}
    for name in ("caliper-worker", "monitor"):
        (tmp / f"{name}.qcow2").write_bytes(b"QFI")
        images[name] = str(tmp / f"{name}.qcow2")
    doc["images"] = images
    return write(tmp, doc)


def test_up_of_a_byof_spec_creates_workers_and_monitor_only(files: Path, tmp_path: Path,
                                                            fake_provider) -> None:
    from launch.lifecycle import up
    from launch.machines.state import StateStore

    path = _launchable(files, tmp_path)
    build = tmp_path / "build"
    result = up.up(path, build_dir=build, repo_root=tmp_path)
    assert fake_provider.instances[-1].created == ["caliper0", "caliper1", "monitor"]
    assert any(w.startswith("preflight: fabric.gateways[0].endpoint: 127.0.0.1:")
               for w in result.warnings), result.warnings
    state = StateStore(build / "environments" / "byof").load()
    assert state.kind == "byof" and state.bootstrap == {}
    assert up.channel_status(state, build_dir=build)[0].startswith("byof: the user's network")
    _, rows = up.status("byof", build_dir=build)
    assert [r.name for r in rows] == ["caliper0", "caliper1", "monitor"]
    # `launch bench` opens it like any lab (no bootstrap host, the manager on caliper0)
    from launch.bench import lab as bench_lab

    lab, targets = bench_lab.open_lab("byof", build_dir=build, repo_root=tmp_path)
    assert lab.plan.kind == "byof" and lab.manager_host == "caliper0"
    assert lab.workers == {"caliper0": 2, "caliper1": 2} and set(targets) == {
        "caliper0", "caliper1", "monitor"}
    # the same spec again: nothing to do (no bootstrap node to wait for)
    assert up.up(path, build_dir=build, repo_root=tmp_path).changed is False
    assert up.resolve_env(str(path), build)[0] == "byof"
    assert up.down(str(path), build_dir=build).known
    assert not (build / "environments" / "byof" / "bundle").exists()


def test_a_failed_preflight_creates_nothing(files: Path, tmp_path: Path,
                                            fake_provider) -> None:
    from launch.lifecycle import up

    path = _launchable(files, tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["fabric"]["msps"][0]["identities"][0]["key"] = str(files / "org2" / "user1.key")
    write(tmp_path, doc)
    with pytest.raises(InputError, match="preflight failed"):
        up.up(path, build_dir=tmp_path / "build", repo_root=tmp_path)
    assert fake_provider.instances == [] or fake_provider.instances[-1].created == []
    assert not (tmp_path / "build" / "environments" / "byof").exists()


# --- identities from a fabric-network wallet ----------------------------------------------

def _wallet(files: Path, into: Path, org: str, msp_id: str, label: str = "User1") -> Path:
    """A fabric-network FileSystemWallet entry (<label>.id) of org's User1."""
    into.mkdir(parents=True, exist_ok=True)
    (into / f"{label}.id").write_text(json.dumps({
        "credentials": {"certificate": (files / org / "user1.crt").read_text(),
                        "privateKey": (files / org / "user1.key").read_text()},
        "mspId": msp_id, "type": "X.509", "version": 1}))
    return into


def _wallet_doc(files: Path, wallet: Path) -> dict:
    doc = _ok_doc(files)
    doc["fabric"]["msps"][0]["identities"] = [{"name": "User1", "wallet": str(wallet)}]
    doc["fabric"]["gateways"][0]["endpoint"] = f"127.0.0.1:{free_port()}"
    doc["fabric"]["gateways"][1]["endpoint"] = f"127.0.0.1:{free_port()}"
    return doc


def test_a_wallet_identity_passes_preflight_and_lands_in_the_network_config(
        files: Path, tmp_path: Path) -> None:
    wallet = _wallet(files, tmp_path / "wallet", "org1", "Org1MSP")
    spec = _spec(tmp_path, _wallet_doc(files, wallet))
    assert spec.msps[0].identities[0].wallet == wallet / "User1.id"
    assert ("fabric.msps[0].identities[0].wallet", wallet / "User1.id") in byof.files(spec)
    report = preflight.run(spec)
    assert report.failures == ()
    assert any("CN=User1@org1.example.com" in line and line.endswith("of Org1MSP")
               for line in report.ok), report.ok
    out = render_bundle.render(spec, tmp_path / "bundle", manifest_root=tmp_path)
    nc = yaml.safe_load((out.out / "caliper" / "networkconfig-caliper0.yaml").read_text())
    cert = nc["organizations"][0]["identities"]["certificates"][0]
    assert cert["clientPrivateKey"]["pem"] == (files / "org1/user1.key").read_text()


def test_a_wallet_identity_of_another_msp_or_missing(files: Path, tmp_path: Path) -> None:
    other = _wallet(files, tmp_path / "other", "org2", "Org2MSP")
    (failure,) = preflight.run(_spec(tmp_path, _wallet_doc(files, other))).failures
    assert failure.field == "fabric.msps[0].identities[0]"
    assert "is an identity of Org2MSP, not of Org1MSP" in failure.message
    (failure,) = preflight.run(_spec(tmp_path, _wallet_doc(files, tmp_path / "none"))).failures
    assert "fabric.msps[0].identities[0].wallet: no wallet entry" in failure.message
    doc = _wallet_doc(files, other)
    doc["fabric"]["msps"][0]["identities"][0]["cert"] = "x.pem"
    with pytest.raises(InputError, match="identities.0..wallet: expected a wallet directory "
                                         "or cert . key files, not both"):
        _spec(tmp_path, doc)


# --- gateways from a common connection profile ----------------------------------------

def _profile(files: Path, tmp: Path, port: int, **peer1: object) -> Path:
    doc = {
        "name": "their-network", "version": "1.0.0",
        "organizations": {
            "Org1": {"mspid": "Org1MSP", "peers": ["peer0.org1.example.com"]},
            "Org2": {"mspid": "Org2MSP", "peers": ["peer0.org2.example.com"]},
            "Org3": {"mspid": "Org3MSP", "peers": ["peer0.org3.example.com"]},   # not ours
        },
        "peers": {
            "peer0.org1.example.com": {
                "url": f"grpcs://gw1.example.net:{port}",
                "tlsCACerts": {"pem": (files / "org1/tlsca.crt").read_text()},
                "grpcOptions": {"ssl-target-name-override": "peer0.org1.example.com"},
                **peer1},
            "peer0.org2.example.com": {
                "url": "grpcs://192.0.2.21:7051",
                "tlsCACerts": {"path": str(files / "org2/tlsca.crt")},
                "grpcOptions": {"hostnameOverride": "peer0.org2.example.com"}},
            "peer0.org3.example.com": {"url": "grpcs://elsewhere:7051"},
        },
        "certificateAuthorities": {"ca.org1.example.com": {"url": "https://ca:7054"}},
    }
    path = tmp / "connection-profile.json"
    path.write_text(json.dumps(doc))
    return path


def _profile_doc(files: Path, profile: Path) -> dict:
    doc = _ok_doc(files)
    del doc["fabric"]["gateways"]
    doc["fabric"]["connection_profile"] = str(profile)
    doc["fabric"]["hosts"] = {"gw1.example.net": "127.0.0.1"}
    return doc


def test_gateways_from_a_connection_profile(files: Path, tmp_path: Path) -> None:
    with tls_server(files / "org1" / "server.crt", files / "org1" / "server.key") as port:
        spec = _spec(tmp_path, _profile_doc(files, _profile(files, tmp_path, port)))
        report = preflight.run(spec, timeout=0.5)
    g1, g2 = spec.gateways
    assert (g1.endpoint, g1.msp_id, g1.fqdn) == (f"gw1.example.net:{port}", "Org1MSP",
                                                 "peer0.org1.example.com")
    assert g1.tls_ca_pem == (files / "org1/tlsca.crt").read_text()
    assert (g2.endpoint, g2.tls_ca, g2.fqdn) == ("192.0.2.21:7051", files / "org2/tlsca.crt",
                                                 "peer0.org2.example.com")
    assert report.failures == ()
    assert any(f"gw1.example.net:{port} (alias 127.0.0.1) presents" in line
               for line in report.ok), report
    assert [w.field for w in report.warnings] == [
        "fabric.connection_profile (connection-profile.json: peers.peer0.org2.example.com)"
        ".endpoint"]
    out = render_bundle.render(spec, tmp_path / "bundle", manifest_root=tmp_path)
    nc = yaml.safe_load((out.out / "caliper" / "networkconfig-caliper0.yaml").read_text())
    peer = nc["organizations"][0]["peers"][0]
    assert peer["tlsCACerts"]["pem"] == g1.tls_ca_pem
    assert peer["grpcOptions"]["ssl-target-name-override"] == "peer0.org1.example.com"


def test_a_bad_connection_profile_names_its_field(files: Path, tmp_path: Path) -> None:
    profile = _profile(files, tmp_path, 7051, url="grpc://gw1.example.net:7051")
    with pytest.raises(InputError) as exc:
        _spec(tmp_path, _profile_doc(files, profile))
    assert f"{profile}: peers.peer0.org1.example.com.url: expected grpcs://host:port" in \
        exc.value.message
    doc = _profile_doc(files, profile)
    doc["fabric"]["gateways"] = spec_doc(files)["fabric"]["gateways"]
    with pytest.raises(InputError, match="either gateways or connection_profile"):
        _spec(tmp_path, doc)
