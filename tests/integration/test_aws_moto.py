"""launch on AWS against moto's server mode: boto3 talks HTTP to 127.0.0.1 (no AWS account).

moto's instances never boot, so `up` waits for `running` only (--wait running).
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import shutil
import time

import aws_double as dbl
import pytest
import yaml
from aws_double import REPO

from fabkit.clikit import run_main
from fabkit.errors import ExternalError
from launch.cli import cli
from launch.lifecycle import up
from launch.machines.state import StateStore

pytest.importorskip("moto")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto():
    server = dbl.MotoServer()
    yield server
    server.stop()


@pytest.fixture
def aws(moto, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # a safety net: a client that lost its endpoint setting still talks to moto, never AWS
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    moto.reset()
    net = dbl.network(moto)
    return {"server": moto, "net": net, "build": tmp_path / "build", "tmp": tmp_path}


def cli_up(aws, spec, *extra):
    return run_main(cli, ["up", str(spec), "--build-dir", str(aws["build"]), "--wait",
                          "running", *extra])


def lib_up(aws, spec, **kw):
    kw.setdefault("wait", "running")
    return up.up(spec, build_dir=aws["build"], repo_root=REPO, **kw)


def test_up_status_down(aws, capsys):
    srv, net = aws["server"], aws["net"]
    spec = dbl.aws_spec(aws["tmp"], srv, net)
    assert cli_up(aws, spec) == 0
    out = capsys.readouterr().out
    assert "running; readiness not waited for" in out

    state = StateStore(aws["build"] / "environments" / "awslab").load()
    plan = json.loads((aws["build"] / "environments/awslab/bundle/plan.json").read_text())
    want = {h["name"]: h["address"] for h in plan["hosts"]}
    assert len(want) == 12
    found = dbl.tagged(srv, "awslab")
    assert len(found["instances"]) == 12 and len(found["enis"]) == 12
    ec2 = srv.client("ec2")
    for inst in found["instances"]:
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        host = tags["fabperf:host"]
        assert inst["PrivateIpAddress"] == want[host]
        assert inst["NetworkInterfaces"][0]["NetworkInterfaceId"] == \
            state.hosts[host].resources["eni"]
        assert {"fabperf:environment", "fabperf:env-id", "fabperf:created-at",
                "fabperf:ttl-hours", "Name"} <= set(tags)
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        role = state.hosts[host].roles[0]
        assert inst["InstanceType"] == {"peer": "c6i.2xlarge", "orderer": "c6i.xlarge",
                                        "caliper": "c6i.2xlarge", "monitor": "m6i.xlarge"}[role]
        ud = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"],
                                             Attribute="userData")["UserData"]["Value"]
        sent = base64.b64decode(ud)
        bundle = (aws["build"] / "environments/awslab/bundle/nodes" / host / "user-data")
        assert sent == bundle.read_bytes()
        vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                              "Values": [inst["InstanceId"]]}])["Volumes"]
        assert vols and all(v["Encrypted"] and v["VolumeType"] == "gp3" for v in vols)
        assert all({t["Key"] for t in v["Tags"]} >= {"fabperf:environment"} for v in vols)
    for eni in found["enis"]:
        assert eni["Groups"][0]["GroupId"] == net["sg"]

    assert run_main(cli, ["status", "awslab", "--build-dir", str(aws["build"]),
                          "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["hosts"]) == 12 and all(h["alive"] for h in doc["hosts"])
    assert all(h["resources"]["instance"].startswith("i-") for h in doc["hosts"])

    # a second up changes nothing
    assert cli_up(aws, spec, "--output", "json") == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False

    assert run_main(cli, ["down", "awslab", "--build-dir", str(aws["build"])]) == 0
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")
    assert not StateStore(aws["build"] / "environments" / "awslab").exists()


def test_user_data_over_16k_goes_through_a_private_encrypted_s3_object(aws, monkeypatch):
    from launch.machines.providers import aws as aws_mod

    srv = aws["server"]
    monkeypatch.setattr(aws_mod, "RAW_USER_DATA_LIMIT", 9000)   # the peers exceed it
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"])
    lib_up(aws, spec)
    state = StateStore(aws["build"] / "environments" / "awslab").load()
    s3, ec2, iam = srv.client("s3"), srv.client("ec2"), srv.client("iam")
    bucket = state.network["bucket"]
    big = [h for h in state.hosts.values() if h.resources.get("s3_key")]
    assert big and len(big) < 12
    for h in big:
        head = s3.head_object(Bucket=bucket, Key=h.resources["s3_key"])
        assert head["ServerSideEncryption"] == "AES256"
        body = s3.get_object(Bucket=bucket, Key=h.resources["s3_key"])["Body"].read()
        assert gzip.decompress(body).startswith(b"#cloud-config")
        inst = ec2.describe_instances(InstanceIds=[h.resources["instance"]])
        inst = inst["Reservations"][0]["Instances"][0]
        assert inst["IamInstanceProfile"]["Arn"].endswith(state.network["instance_profile"])
        ud = base64.b64decode(ec2.describe_instance_attribute(
            InstanceId=inst["InstanceId"], Attribute="userData")["UserData"]["Value"])
        assert len(ud) < 2048 and b"text/cloud-boothook" in ud
        assert f"s3://{bucket}/{h.resources['s3_key']}".encode() in ud
        assert b"BEGIN" not in ud and b"PRIVATE" not in ud       # no secret in the script
        tags = json.dumps(inst["Tags"])
        assert "PRIVATE" not in tags
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(pab.values())
    policy = iam.get_role_policy(RoleName=state.network["instance_profile"],
                                 PolicyName="read-user-data")["PolicyDocument"]
    stmt = (policy if isinstance(policy, dict) else json.loads(policy))["Statement"][0]
    assert stmt["Action"] == "s3:GetObject" and stmt["Resource"].endswith("*")
    up.down("awslab", build_dir=aws["build"])
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


def test_ami_found_by_fingerprint_tag(aws, monkeypatch):
    from launch.machines.providers import aws as aws_mod

    srv, net = aws["server"], aws["net"]
    ec2 = srv.client("ec2")
    # an AMI "baked elsewhere": bake tags it with its fingerprint
    inst = ec2.run_instances(ImageId=net["ami"], MinCount=1, MaxCount=1)["Instances"][0]
    amis = {}
    for image in ("fabric-node", "caliper-worker", "monitor"):
        ami = ec2.create_image(InstanceId=inst["InstanceId"], Name=f"fabperf-{image}")["ImageId"]
        ec2.create_tags(Resources=[ami], Tags=[{"Key": "fabperf:fingerprint",
                                                 "Value": f"fp-{image}"}])
        amis[image] = ami
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    monkeypatch.setattr(aws_mod.AwsProvider, "_fingerprint", lambda self, image: f"fp-{image}")
    spec = dbl.aws_spec(aws["tmp"], srv, net, images=False)
    lib_up(aws, spec)
    state = StateStore(aws["build"] / "environments" / "awslab").load()
    assert {h.image for h in state.hosts.values()} == set(amis.values())
    up.down("awslab", build_dir=aws["build"])


def test_unknown_ami_is_exit_2_before_anything_exists(aws, capsys):
    spec = dbl.aws_spec(aws["tmp"], aws["server"], aws["net"], images=False)
    assert cli_up(aws, spec) == 2
    assert "has no AMI" in capsys.readouterr().err
    assert not aws["build"].exists()
    assert dbl.nothing_left(aws["server"], "awslab")


def test_settings_typo_is_exit_2_in_render_and_up(aws, capsys):
    spec = dbl.aws_spec(aws["tmp"], aws["server"], aws["net"], subnet="subnet-1")
    assert run_main(cli, ["render", str(spec), "--out", str(aws["tmp"] / "out")]) == 2
    assert cli_up(aws, spec) == 2
    err = capsys.readouterr().err
    assert "settings.subnet" in err and "did you mean subnet_id" in err


@pytest.mark.parametrize(("op", "k"), [
    ("ec2.CreateNetworkInterface", 1), ("ec2.CreateNetworkInterface", 7),
    ("ec2.RunInstances", 1), ("ec2.RunInstances", 5), ("ec2.RunInstances", 12),
    ("s3.PutObject", 1), ("s3.PutObject", 3),
])
def test_an_error_at_the_kth_create_leaves_nothing(aws, monkeypatch, op, k):
    from launch.machines.providers import aws as aws_mod

    srv = aws["server"]
    monkeypatch.setattr(aws_mod, "RAW_USER_DATA_LIMIT", 9000)
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"])
    service = op.split(".")[0]
    with dbl.faults() as f:
        f.on(op, lambda n: dbl.error_response(400, "InvalidParameterValue", service)
             if n == k else None)
        with pytest.raises(ExternalError) as exc:
            lib_up(aws, spec)
        assert "InvalidParameterValue" in str(exc.value)
        assert f.count(op) >= k
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")
    assert not StateStore(aws["build"] / "environments" / "awslab").exists()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ctrl_c_at_a_random_point_leaves_nothing(aws, monkeypatch, seed):
    from launch.machines.providers import aws as aws_mod

    srv = aws["server"]
    monkeypatch.setattr(aws_mod, "RAW_USER_DATA_LIMIT", 9000)
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"])
    ops = ["ec2.CreateNetworkInterface", "ec2.RunInstances", "s3.PutObject"]
    rng = random.Random(seed)
    op, k = rng.choice(ops), rng.randint(1, 4)
    fired = []

    def ctrl_c(n):
        if n == k and not fired:
            fired.append(n)
            dbl.interrupt()
        return None

    with dbl.faults() as f:
        f.on(op, ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            lib_up(aws, spec)
            time.sleep(5)          # the signal lands at once; never get here
    assert fired, f"{op} #{k} was never called"
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


def test_throttling_is_retried_with_backoff(aws):
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"])
    with dbl.faults() as f:
        f.on("ec2.RunInstances", lambda n: dbl.error_response(400, "RequestLimitExceeded")
             if n in (1, 2, 4) else None)
        f.on("ec2.CreateNetworkInterface", lambda n: dbl.error_response(503, "Unavailable")
             if n == 1 else None)
        lib_up(aws, spec)
        assert f.count("ec2.RunInstances") == 12 + 3
    assert len(dbl.tagged(srv, "awslab")["instances"]) == 12
    up.down("awslab", build_dir=aws["build"])


def test_state_deleted_mid_run_is_recovered_by_down_through_tags(aws):
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], max_parallel=1)   # deterministic
    edir = aws["build"] / "environments" / "awslab"

    def lose_state(n):
        if n == 6:
            (edir / "state.json").unlink()
        return None

    with dbl.faults() as f:
        f.on("ec2.RunInstances", lose_state)
        with pytest.raises(ExternalError):
            lib_up(aws, spec, keep_on_failure=True)
    left = dbl.tagged(srv, "awslab")["instances"]
    assert len(left) >= 5
    (edir / "state.json").unlink(missing_ok=True)        # and now it is gone altogether
    result = up.down(str(spec), build_dir=aws["build"])
    assert {x.kind for x in result.report.leaked_found} >= {"instance", "eni"}
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


def test_gc_removes_what_a_vanished_environment_left(aws, capsys):
    from launch.machines.providers import aws as aws_mod

    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"])
    lib_up(aws, spec)
    keep = dbl.aws_spec(aws["tmp"], srv, aws["net"], name="alive", workers=1)
    lib_up(aws, keep)
    shutil.rmtree(aws["build"] / "environments" / "awslab")   # the run's machine is gone
    args = ["gc", "--provider", "aws", "--from", str(spec), "--build-dir", str(aws["build"])]
    assert run_main(cli, [*args, "--dry-run", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    kinds = {g["kind"] for g in doc["garbage"]}
    assert kinds >= {"instance", "eni"} and {g["environment"] for g in doc["garbage"]} == \
        {"awslab"}
    assert len(dbl.tagged(srv, "awslab")["instances"]) == 12      # dry run: nothing removed
    assert run_main(cli, args) == 0
    assert dbl.nothing_left(srv, "awslab")
    assert len(dbl.tagged(srv, "alive")["instances"]) == 9        # the live one stays
    # the TTL: with the clock 2 days ahead, the live environment's resources are garbage
    import datetime as dt

    later = dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=2)
    settings = {"endpoint_url": srv.url, "region": "eu-west-1"}
    found = aws_mod.collect(settings, lambda env, eid: True, 0, now=later)
    assert found and {g.reason for g in found} == {"TTL passed"}
    up.down("alive", build_dir=aws["build"])


def test_100_hosts_with_the_concurrency_bound(aws):
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], name="scale", workers=92, max_parallel=8)
    with dbl.faults() as f:
        f.delay = 0.02             # calls overlap observably
        t = time.monotonic()
        result = lib_up(aws, spec)
        took = time.monotonic() - t
        assert len(result.hosts) == 100
        assert 1 < f.max_in_flight["ec2.RunInstances"] <= 8
        assert 1 < f.max_in_flight["ec2.CreateNetworkInterface"] <= 8
    print(f"100 hosts up against moto in {took:.1f}s")
    up.down("scale", build_dir=aws["build"])
    assert dbl.nothing_left(srv, "scale")


@pytest.mark.subprocess
def test_a_host_failing_readiness_names_its_console_output_and_rolls_back(aws):
    """--wait ready through a jump host that refuses: NotReady with the console output."""
    from launch.machines.ready import Timeouts

    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], workers=1, readiness="jump",
                        ssh_jump="nobody@127.0.0.1:1")
    with pytest.raises(ExternalError) as exc:      # every host: one error listing them all
        lib_up(aws, spec, wait="ready", timeouts=Timeouts(process=5, ssh=2, poll=0.5))
    message = str(exc.value)
    assert "9 hosts not ready" in message and "not ready at layer 'ssh'" in message
    assert "console (last" in message and "Linux version" in message   # moto's console
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


def test_ssh_target_of_a_cloud_host(aws):
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], workers=1, readiness="jump",
                        ssh_jump="ops@bastion.example.org")
    lib_up(aws, spec)
    t = up.target("awslab", "monitor", build_dir=aws["build"])
    state = StateStore(aws["build"] / "environments" / "awslab").load()
    assert (t.address, t.port, t.jump) == (state.hosts["monitor"].address, 22,
                                           "ops@bastion.example.org")
    from launch.machines import ssh

    assert ["-J", "ops@bastion.example.org"] == ssh.ssh_argv(t)[-3:-1]
    up.down("awslab", build_dir=aws["build"])


def test_a_fresh_instance_profile_not_yet_usable_is_waited_for(aws, monkeypatch):
    from launch.machines.providers import aws as aws_mod

    monkeypatch.setattr(aws_mod, "RAW_USER_DATA_LIMIT", 9000)
    spec = dbl.aws_spec(aws["tmp"], aws["server"], aws["net"], workers=1, max_parallel=1)
    with dbl.faults() as f:
        f.on("ec2.RunInstances", lambda n: dbl.error_response(
            400, "InvalidParameterValue", message="Value (fabperf-x-ud) for parameter "
            "iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name")
            if n == 1 else None)
        lib_up(aws, spec)
    assert len(dbl.tagged(aws["server"], "awslab")["instances"]) == 9
    up.down("awslab", build_dir=aws["build"])
    assert dbl.nothing_left(aws["server"], "awslab")


# --- issue 22: recovery paths (faults through a proxy on loopback: fault_proxy.py) ---------

@pytest.fixture
def proxy(aws):
    from fault_proxy import FaultProxy

    p = FaultProxy(aws["server"].url, seed=22)
    yield p
    p.stop()


def launch(aws, *args):
    return run_main(cli, [*args, "--build-dir", str(aws["build"])])


def no_region_anywhere(monkeypatch, tmp_path):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))


def running(aws, name="awslab"):
    return len(dbl.tagged(aws["server"], name)["instances"])


@pytest.mark.parametrize("damage", ["truncated", "provider-only"])
def test_down_of_a_damaged_state_removes_everything_in_the_configured_region(
        aws, monkeypatch, capsys, damage):
    """Item 1: a truncated state still names provider and settings (written before the
    hosts); one that names only the provider is asked in $AWS_DEFAULT_REGION, not
    us-east-1. Before: exit 0, the file deleted, 12 instances running."""
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"])
    lib_up(aws, spec)
    path = dbl.state_path(aws["build"], "awslab")
    text = path.read_text()
    if damage == "truncated":
        path.write_text(text[:len(text) // 2])
    else:
        # the settings are gone: region and endpoint come from the user's configuration
        path.write_text('{"environment": "awslab", "provider": "aws", "hosts": {"pe')
        monkeypatch.setenv("AWS_ENDPOINT_URL", srv.url)
    assert running(aws) == 12
    assert launch(aws, "down", "awslab") == 0
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")
    assert "aws eu-west-1" in capsys.readouterr().out
    assert not path.exists()


def test_down_of_a_lost_state_finds_the_environment_or_says_how_to_point_it(
        aws, monkeypatch, capsys, tmp_path):
    """Item 2: state.json lost, `down NAME`. With no region anywhere: exit 2 naming
    --region and --from, nothing claimed removed; with --region: everything removed.
    Before: exit 0 "nothing to remove" (the qemu fallback) with 12 instances running."""
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"])
    lib_up(aws, spec)
    dbl.state_path(aws["build"], "awslab").unlink()
    monkeypatch.setenv("AWS_ENDPOINT_URL", srv.url)
    no_region_anywhere(monkeypatch, tmp_path)
    assert launch(aws, "down", "awslab") == 2
    err = capsys.readouterr().err
    assert "--region" in err and "--from" in err and "internal error" not in err
    assert running(aws) == 12
    assert launch(aws, "down", "awslab", "--region", "eu-west-1") == 0
    assert "aws eu-west-1" in capsys.readouterr().out
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


def test_down_of_a_lost_state_and_bundle_asks_every_configured_cloud(aws, monkeypatch, capsys):
    """Item 2, nothing left on disk but the directory: the provider is unknown, AWS is asked
    in the configured region (AWS_REGION over AWS_DEFAULT_REGION) and what it finds goes."""
    srv = aws["server"]
    lib_up(aws, dbl.aws_spec(aws["tmp"], srv, aws["net"]))
    edir = aws["build"] / "environments" / "awslab"
    (edir / "state.json").unlink()
    shutil.rmtree(edir / "bundle")
    monkeypatch.setenv("AWS_ENDPOINT_URL", srv.url)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(aws["tmp"] / "no-clouds.yaml"))
    for var in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(var, raising=False)
    assert launch(aws, "down", "awslab") == 0
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")
    captured = capsys.readouterr()
    assert "aws eu-west-1" in captured.out and "not asked: openstack" in captured.err


def test_gc_without_from_asks_the_configured_region_and_prints_it(aws, monkeypatch, capsys):
    """Item 3: `gc` without --from asked us-east-1 whatever the variables said."""
    srv = aws["server"]
    lib_up(aws, dbl.aws_spec(aws["tmp"], srv, aws["net"]))
    shutil.rmtree(aws["build"] / "environments" / "awslab")
    monkeypatch.setenv("AWS_ENDPOINT_URL", srv.url)
    assert launch(aws, "gc", "--provider", "aws", "--dry-run", "--output", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["asked"] == [f"aws eu-west-1 at {srv.url}"]
    assert {g["environment"] for g in doc["garbage"]} == {"awslab"}
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert launch(aws, "gc", "--provider", "aws", "--region", "eu-west-1") == 0
    out = capsys.readouterr().out
    assert "asked aws eu-west-1" in out and "removed instance" in out
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


def test_up_without_a_region_anywhere_is_exit_2_and_prints_the_region_it_uses(
        aws, monkeypatch, capsys, tmp_path):
    """Acceptance 3: no silent us-east-1; `up` says where it creates."""
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], workers=1)
    doc = yaml.safe_load(spec.read_text())
    del doc["settings"]["region"]
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    no_region_anywhere(monkeypatch, tmp_path)
    assert cli_up(aws, spec) == 2
    assert "no region" in capsys.readouterr().err
    assert dbl.nothing_left(srv, "awslab") and not aws["build"].exists()
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert cli_up(aws, spec) == 0
    assert "on aws eu-west-1" in capsys.readouterr().out
    state = StateStore(aws["build"] / "environments" / "awslab").load()
    assert state.network["settings"]["region"] == "eu-west-1"      # `down` asks the same
    monkeypatch.delenv("AWS_REGION")
    assert launch(aws, "down", "awslab") == 0
    assert dbl.nothing_left(srv, "awslab")


def test_up_makes_again_an_eni_deleted_behind_its_back(aws):
    """Item 4: a second `up` reconciles: the recorded ENI is gone (with its instance), the
    host gets a new one at its address. Before: RunInstances NotFound and a rollback."""
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"])
    lib_up(aws, spec)
    store = StateStore(aws["build"] / "environments" / "awslab")
    h = store.load().hosts["peer0-org1"]
    ec2 = srv.client("ec2")
    ec2.terminate_instances(InstanceIds=[h.resources["instance"]])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[h.resources["instance"]],
                                               WaiterConfig={"Delay": 0.2})
    ec2.delete_network_interface(NetworkInterfaceId=h.resources["eni"])
    result = lib_up(aws, spec)
    assert result.changed
    again = store.load().hosts["peer0-org1"]
    assert again.resources["eni"] != h.resources["eni"] and again.address == h.address
    assert running(aws) == 12
    up.down("awslab", build_dir=aws["build"])
    assert dbl.nothing_left(srv, "awslab")


@pytest.mark.parametrize(("op", "code"), [("s3.CreateBucket", "InvalidRequest"),
                                          ("iam.CreateRole", "InvalidInput")])
def test_resume_after_a_failed_bucket_or_role_makes_them(aws, proxy, monkeypatch, op, code):
    """Item 5: the bucket and the instance profile were recorded before they existed, and
    the record taken as proof: the resumed `up` failed (NoSuchBucket; NoSuchEntity after
    ~47 s of retries)."""
    from launch.machines.providers import aws as aws_mod

    srv = aws["server"]
    monkeypatch.setattr(aws_mod, "RAW_USER_DATA_LIMIT", 9000)
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], endpoint_url=proxy.url)
    proxy.fail(op, 1, 400, code)
    with pytest.raises(ExternalError, match=code):
        lib_up(aws, spec, keep_on_failure=True)
    t = time.monotonic()
    lib_up(aws, spec)                       # the resume: no fault now
    assert time.monotonic() - t < 40
    state = StateStore(aws["build"] / "environments" / "awslab").load()
    assert running(aws) == 12 and state.network["instance_profile"]
    up.down("awslab", build_dir=aws["build"])
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


@pytest.mark.parametrize("objects", [0, 1])
def test_a_users_own_bucket_is_never_deleted(aws, objects):
    """Item 6: `user_data_bucket` is the user's: `down` deleted it when empty and failed
    with BucketNotEmpty on every run when not."""
    srv = aws["server"]
    s3 = srv.client("s3")
    s3.create_bucket(Bucket="lab-user-data",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    if objects:
        s3.put_object(Bucket="lab-user-data", Key="notes/keep.txt", Body=b"mine")
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], workers=1,
                        user_data_bucket="lab-user-data")
    lib_up(aws, spec)
    assert launch(aws, "down", "awslab") == 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lab-user-data").get("Contents", [])]
    assert keys == (["notes/keep.txt"] if objects else [])
    assert not dbl.state_path(aws["build"], "awslab").exists()


def test_a_second_interrupt_during_rollback_says_how_to_finish(aws, proxy, capsys, caplog):
    """Item 7: a second Ctrl-C stops the rollback; the message says `launch down` (the
    state still lists what is left) and `down` then removes it."""
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], endpoint_url=proxy.url)
    proxy.on("ec2.RunInstances", 5, dbl.interrupt)
    proxy.on("ec2.TerminateInstances", 1, dbl.interrupt)
    assert cli_up(aws, spec) == 130
    said = capsys.readouterr().err + caplog.text
    assert "rollback interrupted" in said and "launch down awslab" in said
    assert dbl.state_path(aws["build"], "awslab").exists()
    assert launch(aws, "down", "awslab") == 0
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


def test_rollback_survives_heavy_throttling(aws, proxy):
    """Item 8: botocore's standard mode stops retrying once its client-wide retry quota is
    spent (500 units, 5 per throttled retry, given back only on success): at 50 % throttled
    calls 100 hosts spend it, and the rollback then died at its first throttled call. Here
    every EC2 call is throttled on its first 3 attempts (the same cause, reached in ~50
    calls and the same for every run); the provider retries past the quota."""
    srv = aws["server"]
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], name="scale", endpoint_url=proxy.url)
    proxy.throttle_attempts(3, services=("ec2",))
    proxy.fail("ec2.RunInstances", 10, 400, "InvalidParameterValue")
    with pytest.raises(ExternalError, match="InvalidParameterValue"):
        lib_up(aws, spec)
    assert proxy.injected["ec2.TerminateInstances"] >= 3      # the rollback was throttled
    assert sum(proxy.injected.values()) > 100                 # quota: 100 retries at most
    assert dbl.nothing_left(srv, "scale"), dbl.tagged(srv, "scale")
    assert not dbl.state_path(aws["build"], "scale").exists()


def test_security_groups_that_do_not_open_the_role_ports_are_exit_2_before_anything(
        aws, capsys):
    """Item 10: the user's groups are checked before anything is created."""
    srv = aws["server"]
    ec2 = srv.client("ec2")
    sg = ec2.create_security_group(GroupName="ssh-only", Description="lab",
                                   VpcId=aws["net"]["vpc"])["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "10.40.0.0/16"}]},
        {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 9999,
         "IpRanges": [{"CidrIp": "10.40.1.0/24"}]}])
    spec = dbl.aws_spec(aws["tmp"], srv, aws["net"], security_group_ids=[sg])
    assert cli_up(aws, spec) == 2
    err = capsys.readouterr().err
    assert "not open from network.cidr 10.40.1.0/24" in err
    assert "1883" in err and "3000" in err and "7050" not in err
    assert dbl.nothing_left(srv, "awslab") and not aws["build"].exists()


def test_two_environments_on_one_subnet_get_different_addresses(aws):
    """Item 10: every environment planned from .10 of network.cidr; the second one now
    leaves out what the first holds, and keeps its addresses on a later `up`."""
    srv = aws["server"]
    one = dbl.aws_spec(aws["tmp"], srv, aws["net"], name="one", workers=1)
    two = dbl.aws_spec(aws["tmp"], srv, aws["net"], name="two", workers=1)
    lib_up(aws, one)
    lib_up(aws, two)
    addr = {n: {h.address for h in StateStore(aws["build"] / "environments" / n).load()
                .hosts.values()} for n in ("one", "two")}
    assert len(addr["one"]) == len(addr["two"]) == 9 and not addr["one"] & addr["two"]
    up.down("one", build_dir=aws["build"])
    assert lib_up(aws, two).changed is False       # the same plan: nothing to do
    up.down("two", build_dir=aws["build"])


def test_user_data_objects_go_when_ready_and_the_role_with_down(aws, monkeypatch):
    """Item 11, as the module docstring now says: the objects are dropped once the hosts
    are ready; the role, profile and bucket stay until `down`."""
    from launch.machines.providers import aws as aws_mod
    from launch.machines.providers.base import ProviderContext

    srv = aws["server"]
    monkeypatch.setattr(aws_mod, "RAW_USER_DATA_LIMIT", 9000)
    lib_up(aws, dbl.aws_spec(aws["tmp"], srv, aws["net"]))
    edir = aws["build"] / "environments" / "awslab"
    store = StateStore(edir)
    state = store.load()
    provider = aws_mod.AwsProvider(ProviderContext("awslab", edir, store))
    provider._after_ready(list(state.hosts))           # what wait_ready does last
    s3, iam = srv.client("s3"), srv.client("iam")
    assert not s3.list_objects_v2(Bucket=state.network["bucket"]).get("Contents")
    assert iam.get_instance_profile(InstanceProfileName=state.network["instance_profile"])
    assert "instance profile" in aws_mod.__doc__ and "stay until `down`" in aws_mod.__doc__
    up.down("awslab", build_dir=aws["build"])
    assert dbl.nothing_left(srv, "awslab"), dbl.tagged(srv, "awslab")


def test_without_groups_the_vpcs_default_group_is_checked(aws, capsys):
    """Item 10: no security_group_ids: the ENIs get the VPC's default group, so that one
    is checked (moto's has no ingress rule; AWS's lets its members in)."""
    srv, net = aws["server"], aws["net"]
    spec = dbl.aws_spec(aws["tmp"], srv, net, workers=1, security_group_ids=[])
    assert cli_up(aws, spec) == 2
    assert "not open from network.cidr" in capsys.readouterr().err
    ec2 = srv.client("ec2")
    default = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [net["vpc"]]},
        {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=default, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": default}]}])
    assert cli_up(aws, spec) == 0
    assert launch(aws, "down", "awslab") == 0
    assert dbl.nothing_left(srv, "awslab")
