"""Provider settings tables, bounded parallel create, gc durations, AWS boot script and tags
(pure: no SDK call, no subprocess)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
import yaml

from fabkit import inputs
from fabkit.errors import InputError
from launch.lifecycle.gc import parse_duration
from launch.machines.providers import aws, base, openstack

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("example", ["local", "aws", "openstack", "big"])
def test_every_example_passes_its_providers_settings(example):
    path = REPO / "environments" / f"{example}.yaml"
    doc = yaml.safe_load(path.read_text())
    checked = base.check_settings(doc["provider"], doc.get("settings"), path)
    assert set(checked) == {r.name for r in base.provider_class(doc["provider"]).SETTINGS}


def test_settings_errors_name_the_file_field_and_bound(tmp_path):
    src = tmp_path / "e.yaml"
    with pytest.raises(InputError,
                       match=r"settings.subnet_id: expected .*\(required field\), found nothing"):
        base.check_settings("aws", {}, src)
    with pytest.raises(InputError, match=r"(?s)settings.max_parallel: expected .*from 1 to 50"
                                         r".*found 500.*EC2 API request rate limits"):
        base.check_settings("aws", {"subnet_id": "subnet-0123456789abcdef0",
                                    "max_parallel": 500}, src)
    with pytest.raises(InputError, match="settings.readiness: expected one of"):
        base.check_settings("openstack", {"network": "n", "readiness": "maybe"}, src)
    with pytest.raises(InputError, match=r"e.yaml: settings.cpus: expected .*integer.*True"):
        base.check_settings("qemu", {"cpus": True}, src)   # bool is not int
    with pytest.raises(InputError, match="provider: expected one of"):
        base.check_settings("vmware", {}, src)


def test_rule_defaults_are_validated_too():
    with pytest.raises(InputError, match="x: expected an integer >= 2"):
        inputs.check_fields({}, [inputs.Rule("x", int, 1, minimum=2)], source=None, path="")


class Slow:
    name = "slow"
    max_parallel = 3

    def __init__(self, fail_at: int | None = None) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.calls = 0
        self.fail_at = fail_at

    def create(self, host, data):
        with self.lock:
            self.calls += 1
            n = self.calls
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.02)
        with self.lock:
            self.now -= 1
        if n == self.fail_at:
            raise RuntimeError(f"create {n} failed")


def _items(n):
    return [(base.HostRequest(f"h{i}", ("peer",), "img"), b"") for i in range(n)]


def test_create_all_respects_the_bound():
    p = Slow()
    base.create_all(p, _items(20))
    assert p.calls == 20 and p.peak == 3


def test_create_all_stops_starting_on_the_first_failure():
    p = Slow(fail_at=2)
    with pytest.raises(RuntimeError, match="create 2 failed"):
        base.create_all(p, _items(40))
    assert p.calls < 40 and p.now == 0      # the running ones finished, no new ones


@pytest.mark.parametrize(("text", "hours"), [("0", 0), ("90m", 1.5), ("6h", 6), ("2d", 48),
                                             ("1w", 168)])
def test_durations(text, hours):
    assert parse_duration(text) == hours


@pytest.mark.parametrize("text", ["6", "-1h", "soon", "1y"])
def test_bad_durations_are_exit_2(text):
    with pytest.raises(InputError, match="--older-than") as exc:
        parse_duration(text)
    assert exc.value.exit_code == 2


def test_boot_script_fetches_and_includes_without_carrying_the_payload():
    script = aws.boot_script("fabperf-lab-1234", "fabperf/lab-1234/peer0.user-data",
                             "eu-west-1")
    assert b"text/cloud-boothook" in script and b"text/x-include-url" in script
    assert b"s3://fabperf-lab-1234/fabperf/lab-1234/peer0.user-data" in script
    assert b"set -euo pipefail" in script and b"umask 077" in script
    assert len(script) < aws.RAW_USER_DATA_LIMIT


def test_tags_carry_environment_host_time_and_ttl_only():
    t = {x["Key"]: x["Value"] for x in aws.tags("lab", "abcd1234", 12, "peer0")}
    assert set(t) == {"fabperf:environment", "fabperf:env-id", "fabperf:created-at",
                      "fabperf:ttl-hours", "fabperf:host", "Name"}
    assert t["fabperf:ttl-hours"] == "12"
    ot = openstack.tags("lab", "abcd1234", 12, "peer0")
    assert "fabperf" in ot and "fabperf-host=peer0" in ot
    assert openstack.tag_value(ot, "fabperf-ttl") == "12"


def test_gc_classification():
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    item = {"Tags": aws.tags("lab", "e1", 6, "h", created=now - dt.timedelta(hours=10))}
    gone = aws._garbage("instance", "i-1", item, lambda e, i: False, 0, now)
    assert gone is not None and gone.reason == "environment gone" and gone.age_hours == 10
    ttl = aws._garbage("instance", "i-1", item, lambda e, i: True, 0, now)
    assert ttl is not None and ttl.reason == "TTL passed"
    assert aws._garbage("instance", "i-1", item, lambda e, i: False, 24, now) is None
    fresh = {"Tags": aws.tags("lab", "e1", 24, "h", created=now - dt.timedelta(hours=1))}
    assert aws._garbage("instance", "i-1", fresh, lambda e, i: True, 0, now) is None
    assert aws._garbage("instance", "i-1", {"Tags": []}, lambda e, i: False, 0, now) is None
