"""moto's server mode (a real HTTP endpoint on 127.0.0.1) and fault injection for boto3.

Faults go in through botocore's own event hooks on the clients the provider makes
(launch.machines.providers.aws.CLIENT_HOOKS): `before-send` returns an HTTP error response, so
botocore's retry logic sees exactly what a real EC2/S3 error would give it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


class MotoServer:
    """A ThreadedMotoServer on 127.0.0.1 with a reset between tests."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        self.server.stop()

    def client(self, service: str, region: str = "eu-west-1") -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=region)


def network(server: MotoServer) -> dict[str, Any]:
    """A VPC 10.40.0.0/16 with the subnet 10.40.1.0/24 and a security group whose members
    reach each other on every port (as AWS's default group)."""
    ec2 = server.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="fabperf", Description="lab", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sg}]}])
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    return {"vpc": vpc, "subnet": subnet, "sg": sg, "ami": ami}


def state_path(build: Path, environment: str) -> Path:
    return build / "environments" / environment / "state.json"


def aws_spec(tmp_path: Path, server: MotoServer, net: dict[str, Any], *, name: str = "awslab",
             workers: int | None = None, images: bool = True, **settings: Any) -> Path:
    """environments/aws.yaml pointed at the moto server (optionally more Caliper VMs)."""
    doc = yaml.safe_load((REPO / "environments" / "aws.yaml").read_text())
    doc["name"] = name
    doc["settings"].update({"endpoint_url": server.url, "subnet_id": net["subnet"],
                            "security_group_ids": [net["sg"]], "poll_seconds": 0.2})
    if images:
        doc["settings"]["images"] = {i: net["ami"] for i in
                                     ("fabric-node", "caliper-worker", "monitor")}
    doc["settings"].update(settings)
    if workers is not None:
        doc["caliper"]["workers"]["vms"] = workers
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tagged(server: MotoServer, environment: str) -> dict[str, list[Any]]:
    """Every live resource carrying the environment's tag (instances not terminated)."""
    ec2 = server.client("ec2")
    f = [{"Name": "tag:fabperf:environment", "Values": [environment]}]
    inst = [i for r in ec2.describe_instances(Filters=[*f, {
        "Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
        ["Reservations"] for i in r["Instances"]]
    enis = ec2.describe_network_interfaces(Filters=f)["NetworkInterfaces"]
    vols = ec2.describe_volumes(Filters=f)["Volumes"]
    s3 = server.client("s3")
    objects = []
    for b in s3.list_buckets().get("Buckets", []):
        objects += [f"{b['Name']}/{o['Key']}" for o in
                    s3.list_objects_v2(Bucket=b["Name"]).get("Contents", [])]
        objects.append(f"bucket {b['Name']}")
    iam = server.client("iam")
    roles = [r["RoleName"] for r in iam.list_roles(PathPrefix="/fabperf/")["Roles"]]
    return {"instances": inst, "enis": enis, "volumes": vols, "s3": objects, "roles": roles}


def nothing_left(server: MotoServer, environment: str) -> bool:
    left = tagged(server, environment)
    return not any(left.values())


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def error_response(status: int, code: str, service: str = "ec2",
                   message: str = "injected by the test") -> Any:
    """An AWS error as the HTTP layer returns it (EC2 and S3 XML shapes)."""
    from botocore.awsrequest import AWSResponse

    if service == "ec2":
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}"
                f"</Message></Error></Errors><RequestID>test</RequestID></Response>")
    else:
        body = (f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<RequestId>test</RequestId></Error>")
    return AWSResponse("http://test", status, {"Content-Type": "text/xml"},
                       _Raw(body.encode()))


class Faults:
    """Counts calls per operation and answers some of them with an error."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.rules: list[tuple[str, Callable[[int], Any]]] = []
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.delay = 0.0

    def on(self, operation: str, action: Callable[[int], Any]) -> None:
        """action(n) for the n-th call (1-based) of ``service.Operation``: returns an
        AWSResponse to send instead, or None to let it through (it may raise)."""
        self.rules.append((operation, action))

    def hook(self, service: str, client: Any) -> None:
        events = client.meta.events
        sid = client.meta.service_model.service_id.hyphenize()

        def before_send(request: Any, **kw: Any) -> Any:
            op = f"{sid}.{kw.get('event_name', '').split('.')[-1]}"
            with self.lock:
                n = self.calls[op] = self.calls.get(op, 0) + 1
            for name, action in self.rules:
                if name == op:
                    resp = action(n)
                    if resp is not None:
                        return resp
            return None

        def before_call(model: Any, **kw: Any) -> None:
            import time

            op = f"{sid}.{model.name}"
            with self.lock:
                self.in_flight[op] = self.in_flight.get(op, 0) + 1
                self.max_in_flight[op] = max(self.max_in_flight.get(op, 0),
                                             self.in_flight[op])
            if self.delay:
                time.sleep(self.delay)

        def after_call(model: Any, **kw: Any) -> None:
            op = f"{sid}.{model.name}"
            with self.lock:
                self.in_flight[op] -= 1

        events.register("before-send", before_send)
        events.register("before-call", before_call)
        events.register("after-call", after_call)
        events.register("after-call-error", after_call)

    def count(self, op: str) -> int:
        return self.calls.get(op, 0)


@contextmanager
def faults() -> Iterator[Faults]:
    from launch.machines.providers import aws

    f = Faults()
    aws.CLIENT_HOOKS.append(f.hook)
    try:
        yield f
    finally:
        aws.CLIENT_HOOKS.remove(f.hook)


def interrupt() -> None:
    """A real Ctrl-C: SIGINT to this process (Python raises KeyboardInterrupt in the main
    thread, wherever it is)."""
    os.kill(os.getpid(), signal.SIGINT)
