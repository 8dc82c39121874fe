"""bake's cloud artifact lookup by fingerprint (bake.build.up_to_date / _cloud_has) against
the same API doubles launch is tested with: moto's server mode and the OpenStack double."""

from __future__ import annotations

from pathlib import Path

import pytest

from bake import build, manifest, profiles

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def target(provider: profiles.Provider, tmp_path: Path, **env: str) -> build.Target:
    overrides = profiles.make_overrides(None, (), env=env)
    return build.plan(REPO, tmp_path, provider, ["monitor"], overrides,
                      placeholder_base=True)[0]


def entry(t: build.Target, artifact: dict[str, str]) -> manifest.Entry:
    return manifest.Entry(name=t.spec.name, fingerprint=t.fingerprint.digest, artifact=artifact)


def test_aws_lookup_by_fingerprint_tag(tmp_path, monkeypatch):
    pytest.importorskip("moto")
    import aws_double as dbl

    server = dbl.MotoServer()
    try:
        for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
                     "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": server.url}.items():
            monkeypatch.setenv(k, v)
        t = target(profiles.Provider.AWS, tmp_path)
        entries = {"monitor": {"aws": entry(t, {"ami": "ami-12345678", "region": "eu-west-1"})}}
        notes: list[str] = []
        ok, why = build.up_to_date(t, entries, notes.append)
        assert (ok, why) == (False, "the manifest's artifact is gone from the cloud"), notes

        ec2 = server.client("ec2")
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]
        baked = ec2.create_image(InstanceId=inst["InstanceId"], Name="fabperf-monitor")["ImageId"]
        ec2.create_tags(Resources=[baked], Tags=[{"Key": "fabperf:fingerprint",
                                                   "Value": t.fingerprint.digest}])
        assert build.up_to_date(t, entries, notes.append) == (True, "up to date"), notes
    finally:
        server.stop()


def test_openstack_lookup_by_fingerprint_tag_and_property(tmp_path, monkeypatch):
    pytest.importorskip("openstack")
    import openstack_double as od

    double = od.OpenStackDouble()
    try:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE",
                           str(double.clouds_yaml(tmp_path / "clouds.yaml")))
        monkeypatch.setenv("OS_CLOUD", "fabperf")
        t = target(profiles.Provider.OPENSTACK, tmp_path, FABPERF_OPENSTACK_CLOUD="fabperf")
        assert t.profile.cloud == "fabperf"
        entries = {"monitor": {"openstack": entry(t, {"image_id": "x", "cloud": "fabperf"})}}
        notes: list[str] = []
        assert build.up_to_date(t, entries, notes.append)[0] is False, notes
        fp = t.fingerprint.digest
        double.cloud.add_image("fabperf-monitor", [f"fabperf-fp-{fp}"],
                               {"fabperf:fingerprint": fp})
        assert build.up_to_date(t, entries, notes.append) == (True, "up to date"), notes
    finally:
        double.stop()
