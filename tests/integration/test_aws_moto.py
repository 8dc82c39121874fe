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
