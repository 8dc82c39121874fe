"""The BYOF bundle through the real validators: every user-data passes `cloud-init schema`,
and the monitor's prometheus.yml (the baked one plus a job per https operations endpoint,
with its CA, client certificate and key) passes `promtool check config`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from fabkit import runner
from launch.render import bundle as render_bundle
from launch.render import cloudinit
from launch.spec import byof

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "launch"))
from byof_testlib import export, spec_doc, user_network, write

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("byof-int")
    files = export(user_network(tmp), tmp / "exported")
    doc = spec_doc(files)
    doc["fabric"]["operations"].append({
        "url": "https://192.0.2.21:9443/metrics", "host": "peer0.org2.example.com",
        "tls_ca": str(files / "org2/tlsca.crt"), "tls_server_name": "peer0.org2.example.com",
        "client_cert": str(files / "org2/user1.crt"), "client_key": str(files / "org2/user1.key")})
    spec = byof.load(write(tmp, doc))
    return render_bundle.render(spec, tmp / "bundle", manifest_root=tmp), tmp


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed")
def test_every_byof_user_data_is_valid_cloud_config(rendered) -> None:
    bundle, tmp = rendered
    for host, ud in bundle.user_data.items():
        text = tmp / f"{host}.cloud-config"
        text.write_bytes(cloudinit.decode(ud.data))
        done = runner.run(["cloud-init", "schema", "--config-file", str(text)], check=False,
                          what="cloud-init schema")
        assert done.returncode == 0, f"{host}: {done.stdout}{done.stderr}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_monitors_prometheus_yml_passes_promtool(rendered) -> None:
    bundle, tmp = rendered
    doc = yaml.safe_load((bundle.out / "monitor" / "prometheus.yml").read_text())
    # the files the jobs name, where promtool can see them (on the monitor: /etc/prometheus)
    mon = cloudinit.decode(bundle.user_data["monitor"].data)
    root = tmp / "monitor-root"
    for f in yaml.safe_load(mon)["write_files"]:
        dest = root / f["path"].lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f["content"])
    text = yaml.safe_dump(doc).replace("/etc/prometheus/", f"{root}/etc/prometheus/")
    cfg = tmp / "prometheus.yml"
    cfg.write_text(text)
    done = runner.run(["promtool", "check", "config", str(cfg)], check=False,
                      what="promtool check config")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
