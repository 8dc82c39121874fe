"""The AWS provider: an environment's hosts as EC2 instances (boto3, imported lazily).

Per environment, in the order `up` makes them, each recorded in the state the moment it
exists and tagged at creation (fabperf:environment, fabperf:env-id, fabperf:host,
fabperf:created-at, fabperf:ttl-hours, Name):
- region: settings `region`, else $AWS_REGION, else $AWS_DEFAULT_REGION, else the AWS
  profile's; none of them is an error (never a silent us-east-1). It is recorded in the
  state, and `up`, `down` and `gc` print it;
- before anything is created: the `security_group_ids` must let every host reach every
  role port of the plan (launch.providers.base.ROLE_PORTS and SSH) from network.cidr (a
  rule whose source range holds it, or one that names one of those groups); `up` says
  which ports are missing (exit 2). fabperf manages no security group of its own: see
  README, provider aws. The addresses other ENIs hold in the subnet are left out of the
  plan (two environments can share a subnet);
- reserve: one ENI per host at the plan's address in `subnet_id`, with `security_group_ids`
  (the address is in the certificates, so it is fixed before anything boots); a recorded
  ENI that is gone is made again (`up` reconciles);
- create: `run_instances` on that ENI: the AMI (settings `images:`, the bake manifest, or an
  AMI tagged with the image's fingerprint), the instance type of the host's role, IMDSv2
  required, an encrypted gp3 root volume, tags on the instance and its volumes. At most
  `max_parallel` creates run at once (launch.machines.providers.base.create_all);
- user-data over EC2's 16 KB: the (gzipped) cloud-config goes to a private, encrypted S3
  object (bucket `fabperf-<env>-<env-id>` unless `user_data_bucket`), the instance gets an
  instance profile whose role may read only its environment's objects, and its user-data is
  a small boot script that fetches the object at boot. The bucket and the role are recorded
  in the state once they exist (a resumed `up` makes them again when they do not). The
  objects are removed once the hosts are ready; the role, its instance profile and the
  bucket stay until `down` (a host `up --only --recreate` makes again needs them; the
  role may read only the environment's prefix, empty by then). A bucket given as
  `user_data_bucket` is the user's: `down` removes fabperf's objects from it, never the
  bucket. Nothing secret goes into tags or logs;
- readiness: the instance-running waiter, then SSH to the private address (`readiness:
  private`, from inside the VPC), the public one (`public`) or through `ssh_jump` (`jump`);
  the console output is in the error of a host that fails.

`down` terminates what the state lists plus everything tagged with the environment's id
(ENIs and volumes deleted `max_parallel` at once); `launch gc` finds resources whose
environment is gone or whose TTL passed (`collect`). Throttling is retried with backoff by
botocore's standard retry mode and, once its retry quota is spent, by `retry_throttled`
(a rollback or a `down` must not give up at the first throttled call).
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import gzip
import hashlib
import ipaddress
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fabkit import inputs
from fabkit.errors import ExternalError, InputError
from launch.machines.providers.base import (
    Garbage,
    HostRequest,
    Leaked,
    ProviderContext,
    bake_fingerprint,
    manifest_artifact,
    parallel,
    plan_hosts,
)
from launch.machines.providers.cloud import CloudProvider, garbage, require_open_ports
from launch.machines.state import EnvState, HostState, Phase
from launch.render.plan import Plan
from launch.spec.contract import Role

log = logging.getLogger("fabperf.aws")

TAG = "fabperf"
RAW_USER_DATA_LIMIT = 16384          # EC2: user-data before base64
IAM_PATH = "/fabperf/"
DEFAULT_TYPES = {"peer": "c6i.xlarge", "orderer": "c6i.large", "caliper": "c6i.xlarge",
                 "monitor": "m6i.large"}
PROFILE_RETRIES = 8
LIVE_STATES = ("pending", "running", "stopping", "stopped")
# Instruments every client the provider makes (tests inject faults and count calls here).
CLIENT_HOOKS: list[Callable[[str, Any], None]] = []

SETTINGS: tuple[inputs.Rule, ...] = (
    inputs.Rule("region", str, "", pattern=r"([a-z]{2}(-[a-z]+)+-\d+)?",
                doc="EC2 region (default: $AWS_REGION, $AWS_DEFAULT_REGION, the profile's)"),
    inputs.Rule("endpoint_url", str, "", pattern=r"(https?://[^\s]+)?",
                doc="API endpoint (an API double); default AWS, or $AWS_ENDPOINT_URL"),
    inputs.Rule("subnet_id", str, pattern=r"subnet-[0-9a-f]{8,17}",
                doc="the subnet whose range is network.cidr"),
    inputs.Rule("security_group_ids", list, [], maximum=5, why="EC2 allows 5 per ENI",
                doc="security groups of every ENI"),
    inputs.Rule("key_name", str, "", pattern=r"[\w .+=@-]{0,255}",
                doc="an EC2 key pair (optional: the environment's own key is in user-data)"),
    inputs.Rule("instance_types", dict, {}, doc="role -> instance type"),
    inputs.Rule("images", dict, {}, doc="image -> AMI id (else manifest, else fingerprint tag)"),
    inputs.Rule("root_volume_gb", int, 40, minimum=8, maximum=16384, why="EBS gp3 limit"),
    inputs.Rule("kms_key_id", str, "", doc="KMS key of volumes and S3 objects (default: AWS's)"),
    inputs.Rule("ttl_hours", (int, float), 24, minimum=0.1, maximum=24 * 30,
                why="`launch gc` removes what outlives it", doc="tagged lifetime"),
    inputs.Rule("max_parallel", int, 10, minimum=1, maximum=50,
                why="EC2 API request rate limits", doc="creates at once"),
    inputs.Rule("user_data_bucket", str, "", pattern=r"([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?",
                doc="bucket for user-data over 16 KB (default: one per environment)"),
    inputs.Rule("readiness", str, "private", choices=("private", "public", "jump"),
                doc="how SSH reaches hosts: private address, public address, jump host"),
    inputs.Rule("ssh_jump", str, "", pattern=r"([\w.-]+@)?[\w.-]+(:\d+)?|",
                doc="user@host[:port] of a jump host inside the VPC (readiness: jump)"),
    inputs.Rule("public_ip", bool, False, doc="give every instance a public address"),
    inputs.Rule("poll_seconds", (int, float), 5, minimum=0, maximum=60, doc="waiter delay"),
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(tz=_dt.UTC)


def tags(environment: str, eid: str, ttl_hours: float, host: str | None = None,
         created: _dt.datetime | None = None) -> list[dict[str, str]]:
    """The tags every resource of the environment carries (nothing secret)."""
    t = {f"{TAG}:environment": environment, f"{TAG}:env-id": eid,
         f"{TAG}:created-at": (created or _now()).isoformat(timespec="seconds"),
         f"{TAG}:ttl-hours": f"{ttl_hours:g}"}
    if host is not None:
        t[f"{TAG}:host"] = host
        t["Name"] = f"fabperf-{environment}-{host}"
    return [{"Key": k, "Value": v} for k, v in t.items()]


def boot_script(bucket: str, key: str, region: str, endpoint: str = "") -> bytes:
    """The user-data of a host whose cloud-config is in S3: a MIME multipart whose boothook
    fetches the object with the instance profile's credentials and whose include part hands
    it to cloud-init (the pattern of cluster-api-provider-aws)."""
    ep = f" --endpoint-url {endpoint}" if endpoint else ""
    hook = f"""#!/bin/bash
set -euo pipefail
umask 077
out=/etc/fabperf-user-data.txt
[ -s "$out" ] && exit 0
for i in $(seq 1 30); do
  if aws s3 cp --region {region}{ep} "s3://{bucket}/{key}" "$out.gz" --only-show-errors; then
    break
  fi
  sleep 5
done
gunzip -f "$out.gz"
"""
    boundary = "==FABPERF=="
    return (f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n"
            f"--{boundary}\nContent-Type: text/cloud-boothook; charset=\"us-ascii\"\n\n{hook}\n"
            f"--{boundary}\nContent-Type: text/x-include-url; charset=\"us-ascii\"\n\n"
            f"file:///etc/fabperf-user-data.txt\n--{boundary}--\n").encode()


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def api_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A failed AWS call is an ExternalError (exit 1) naming the operation and the code."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if type(exc).__module__.startswith("botocore"):
                raise ExternalError(f"AWS: {exc}",
                                    hint="see the IAM permissions in README (provider aws)"
                                    if "AccessDenied" in str(exc) or "Unauthorized" in str(exc)
                                    else None) from exc
            raise
    return wrapper


REGION_HINT = ("set settings.region in the spec, or AWS_REGION / AWS_DEFAULT_REGION, or "
               "pass --region")


def region_of(settings: Mapping[str, Any]) -> str:
    """The region: settings, else $AWS_REGION, else $AWS_DEFAULT_REGION, else the AWS
    profile's (InputError when none names one: never a silent default)."""
    region = str(settings.get("region") or "") or os.environ.get("AWS_REGION", "") \
        or os.environ.get("AWS_DEFAULT_REGION", "")
    if not region:
        try:
            import boto3
        except ImportError as exc:
            raise InputError("provider aws needs boto3",
                             hint="pip install 'fabperf[aws]'") from exc
        region = str(boto3.session.Session().region_name or "")
    if not region:
        raise InputError("provider aws: no region (settings.region, AWS_REGION, "
                         "AWS_DEFAULT_REGION and the AWS profile name none)", hint=REGION_HINT)
    return region


# What a throttled or briefly unavailable AWS call answers (botocore's throttling codes).
THROTTLED = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "BandwidthLimitExceeded", "EC2ThrottledException", "PriorRequestNotComplete",
    "ServiceUnavailable", "Unavailable", "InternalError", "InternalFailure"})
THROTTLE_ATTEMPTS = 15       # botocore's 10, then ours once its retry quota is spent
THROTTLE_MAX_DELAY = 8.0


def retry_throttled(attempts: int, response: Any = None, caught_exception: Any = None,
                    **_: Any) -> float | None:
    """A `needs-retry` handler after botocore's: a throttled call (or 5xx) is retried with
    full-jitter backoff up to THROTTLE_ATTEMPTS even when botocore's standard mode says no
    because its client-wide retry quota is spent (at 50 % throttling 100 hosts spend it in
    seconds, and a rollback would then die at its first throttled call). botocore's delay
    wins when it retries (emit picks the first answer)."""
    if attempts >= THROTTLE_ATTEMPTS:
        return None
    if response is not None:
        status = int(getattr(response[0], "status_code", 0) or 0)
        code = str((response[1] or {}).get("Error", {}).get("Code", ""))
        if code not in THROTTLED and status not in (429, 500, 502, 503, 504):
            return None
    elif caught_exception is None or type(caught_exception).__name__ not in (
            "ConnectionClosedError", "EndpointConnectionError", "ReadTimeoutError",
            "ConnectTimeoutError"):
        return None
    return random.random() * min(THROTTLE_MAX_DELAY, 0.25 * 2 ** attempts)


def connect(settings: Mapping[str, Any], service: str, max_pool: int = 10) -> Any:
    """A boto3 client in the settings' region: standard retry mode (throttling retried with
    backoff), then retry_throttled."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise InputError("provider aws needs boto3",
                         hint="pip install 'fabperf[aws]'") from exc
    cfg = Config(retries={"mode": "standard", "max_attempts": 10},
                 max_pool_connections=max_pool + 4, connect_timeout=10, read_timeout=60)
    client = boto3.session.Session().client(
        service, region_name=region_of(settings),
        endpoint_url=str(settings.get("endpoint_url") or "") or None, config=cfg)
    sid = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"needs-retry.{sid}", retry_throttled,
                                unique_id=f"fabperf-throttled-{sid}")
    for hook in CLIENT_HOOKS:
        hook(service, client)
    return client


class AwsProvider(CloudProvider):
    """Provider for EC2 (see the module docstring)."""

    name = "aws"
    SETTINGS = SETTINGS
    PUBLIC = "public"
    DEFAULT_PARALLEL = 10

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        # resolved once and recorded with the settings: `down` asks the same region
        self.settings["region"] = region_of(self.settings)
        self._clients: dict[str, Any] = {}
        self._root_device: dict[str, str] = {}
        self._made: set[str] = set()      # bucket / role made (or checked) by this process

    def where(self) -> str:
        """The region asked (and the endpoint when it is not AWS's)."""
        return located(self.settings)

    # --- clients -------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """One client per service (boto3 clients are thread-safe)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = connect(self.settings, service, self.max_parallel)
            return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    def _filters(self, host: str | None = None) -> list[dict[str, Any]]:
        f = [{"Name": f"tag:{TAG}:env-id", "Values": [self.eid]},
             {"Name": f"tag:{TAG}:environment", "Values": [self.env]}]
        if host is not None:
            f.append({"Name": f"tag:{TAG}:host", "Values": [host]})
        return f

    def _tags(self, host: str | None = None) -> list[dict[str, str]]:
        return tags(self.env, self.eid, self.ttl, host)

    # --- sizing and images -----------------------------------------------------------
    @api_errors
    def host_requests(self, plan: Plan, only: Sequence[str] = ()) -> list[HostRequest]:
        """Per host: the instance type of its (first) role and its AMI."""
        types = {**DEFAULT_TYPES, **dict(self.settings.get("instance_types") or {})}
        for role, t in types.items():
            if role not in DEFAULT_TYPES:
                raise InputError.field(None, f"settings.instance_types.{role}",
                                       f"one of {sorted(DEFAULT_TYPES)}", role)
            if not isinstance(t, str) or "." not in t:
                raise InputError.field(None, f"settings.instance_types.{role}",
                                       "an instance type such as c6i.xlarge", t)
        out = []
        for h in plan_hosts(plan, only):
            roles = tuple(r.value for r in h.roles)
            out.append(HostRequest(name=h.name, roles=roles, image=self.image_for(h),
                                   address=h.address, size=types[roles[0]],
                                   disk_gb=int(self.settings.get("root_volume_gb", 40))))
        self.check_security_groups({Role(r) for h in plan.hosts for r in h.roles})
        return out

    @api_errors
    def check_security_groups(self, roles: Iterable[Role]) -> None:
        """The groups must let network.cidr reach SSH and every role port (InputError
        naming the missing ports): checked before anything is created. No groups given:
        the VPC's default group (what EC2 gives the ENIs then)."""
        groups = [str(g) for g in self.settings.get("security_group_ids") or []]
        if not self.ctx.cidr:
            return
        if groups:
            found = self.ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]
        else:
            subnets = self.ec2.describe_subnets(
                SubnetIds=[str(self.settings["subnet_id"])])["Subnets"]
            found = self.ec2.describe_security_groups(Filters=[
                {"Name": "vpc-id", "Values": [subnets[0]["VpcId"]]},
                {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
            groups = [g["GroupId"] for g in found]
        perms = [p for g in found for p in g.get("IpPermissions", [])]
        cidr = self.ctx.cidr
        require_open_ports("aws", "security_group_ids", groups, roles, cidr,
                           lambda port: _allows(perms, port, cidr, set(groups)))

    @api_errors
    def addresses_in_use(self) -> set[str]:
        """Private addresses other ENIs (not this environment's) hold in the subnet."""
        busy: set[str] = set()
        pages = self.ec2.get_paginator("describe_network_interfaces").paginate(
            Filters=[{"Name": "subnet-id", "Values": [str(self.settings["subnet_id"])]}])
        for eni in (e for page in pages for e in page["NetworkInterfaces"]):
            if _tag(eni, f"{TAG}:env-id") == self.eid:
                continue
            busy |= {a["PrivateIpAddress"] for a in eni.get("PrivateIpAddresses", [])}
            busy.add(eni.get("PrivateIpAddress", ""))
        return busy - {""}

    def image_for(self, host: Any) -> str:
        """The AMI: settings `images:`, the plan (spec images / bake manifest), else the
        AMI tagged with the image's fingerprint (baked elsewhere)."""
        given = dict(self.settings.get("images") or {}).get(host.image) or host.image_id \
            or manifest_artifact(host.image, "aws", "ami", self.ctx.build_dir)
        if given:
            if not str(given).startswith("ami-"):
                raise InputError.field(None, f"settings.images.{host.image}",
                                       "an AMI id (ami-...)", given)
            return str(given)
        fp = self._fingerprint(host.image)
        if fp:
            found = find_image(self.ec2, fp)
            if found:
                return found
        raise InputError(f"image {host.image} has no AMI: not in settings.images, not in the "
                         f"bake manifest, and no AMI is tagged {TAG}:fingerprint={fp or '?'}",
                         hint=f"run `bake build --provider aws --image {host.image}`")

    def _fingerprint(self, image: str) -> str | None:
        return bake_fingerprint(self.ctx, "aws", image)

    # --- reserve -------------------------------------------------------------------
    def _reserve_one(self, req: HostRequest) -> None:
        # the ENI the tags find, not the one the state records: it may be gone (deleted
        # behind our back, or with a rollback), and then it is made again (a reconcile)
        cur = self._state().hosts.get(req.name)
        recorded = cur.resources.get("eni") if cur is not None else None
        found = self.ec2.describe_network_interfaces(
            Filters=self._filters(req.name))["NetworkInterfaces"]
        found.sort(key=lambda e: e["NetworkInterfaceId"] != recorded)
        if found:
            eni = found[0]
            if recorded and eni["NetworkInterfaceId"] == recorded:
                return
        else:
            if recorded:
                log.warning("%s: its ENI %s is gone; making another", req.name, recorded)
            eni = self.ec2.create_network_interface(
                SubnetId=self.settings["subnet_id"], PrivateIpAddress=req.address,
                Groups=list(self.settings.get("security_group_ids") or []),
                Description=f"fabperf {self.env} {req.name}",
                TagSpecifications=[{"ResourceType": "network-interface",
                                    "Tags": self._tags(req.name)}])["NetworkInterface"]
        self.store.update_host(req.name, address=eni["PrivateIpAddress"], roles=req.roles,
                               image=req.image, phase=Phase.RESERVED,
                               resources={"eni": eni["NetworkInterfaceId"]})

    # --- create --------------------------------------------------------------------
    @api_errors
    def alive(self, host: HostState) -> bool:
        """The recorded instance exists and is pending or running."""
        iid = host.resources.get("instance")
        if not iid:
            return False
        return self._instance_state(iid) in ("pending", "running")

    def _instance_state(self, iid: str) -> str:
        try:
            res = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        except Exception as exc:
            if _code(exc).startswith("InvalidInstanceID"):
                return "gone"
            raise
        insts = [i for r in res for i in r["Instances"]]
        return str(insts[0]["State"]["Name"]) if insts else "gone"

    @api_errors
    def create(self, host: HostRequest, user_data: bytes) -> None:
        """run_instances on the host's ENI (user-data over 16 KB through S3)."""
        state = self._state()
        cur = state.hosts.get(host.name)
        if cur is None or not cur.resources.get("eni"):
            raise ExternalError(f"host {host.name}: create before reserve")
        if self.alive(cur):
            return
        generation = cur.generation + (1 if cur.resources.get("instance") else 0)
        self.store.update_host(host.name, phase=Phase.CREATING, generation=generation,
                               error="",
                               user_data_sha256=hashlib.sha256(user_data).hexdigest())
        extra: dict[str, Any] = {}
        payload = user_data
        if len(user_data) > RAW_USER_DATA_LIMIT:
            bucket, key = self._upload(host.name, user_data)
            payload = boot_script(bucket, key, str(self.settings["region"]),
                                  str(self.settings.get("endpoint_url") or ""))
            extra["IamInstanceProfile"] = {"Name": self._instance_profile(bucket)}
        ami = host.image
        ebs: dict[str, Any] = {"VolumeSize": host.disk_gb or 40, "VolumeType": "gp3",
                               "Encrypted": True, "DeleteOnTermination": True}
        if self.settings.get("kms_key_id"):
            ebs["KmsKeyId"] = self.settings["kms_key_id"]
        if self.settings.get("key_name"):
            extra["KeyName"] = self.settings["key_name"]
        token = hashlib.sha256(f"{self.eid}/{self.env}/{host.name}/{generation}".encode())
        args = dict(
            ImageId=ami, InstanceType=host.size or "c6i.large", MinCount=1, MaxCount=1,
            ClientToken=token.hexdigest()[:64],
            NetworkInterfaces=[{"DeviceIndex": 0,
                                "NetworkInterfaceId": cur.resources["eni"]}],
            UserData=payload,
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled",
                             "HttpPutResponseHopLimit": 1},
            BlockDeviceMappings=[{"DeviceName": self._root_device_of(ami), "Ebs": ebs}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": self._tags(host.name)},
                               {"ResourceType": "volume", "Tags": self._tags(host.name)}],
            **extra)
        for attempt in range(PROFILE_RETRIES + 1):
            try:
                resp = self.ec2.run_instances(**args)
                break
            except Exception as exc:
                # a new instance profile takes seconds to be usable (IAM is eventually
                # consistent): EC2 says it is invalid meanwhile
                if "IamInstanceProfile" not in extra or attempt == PROFILE_RETRIES or \
                        "instance profile" not in str(exc).lower():
                    raise
                time.sleep(2 + attempt)
        iid = resp["Instances"][0]["InstanceId"]
        self.store.update_host(host.name, resources={"instance": iid}, phase=Phase.CREATING)
        log.info("%s: instance %s (%s, %s)", host.name, iid, host.size, ami)

    def _root_device_of(self, ami: str) -> str:
        with self._lock:
            if ami not in self._root_device:
                imgs = self.ec2.describe_images(ImageIds=[ami])["Images"]
                if not imgs:
                    raise InputError(f"AMI {ami} does not exist in {self.settings['region']}")
                self._root_device[ami] = str(imgs[0].get("RootDeviceName") or "/dev/xvda")
            return self._root_device[ami]

    # --- big user-data ---------------------------------------------------------------
    def bucket_name(self) -> str:
        return str(self.settings.get("user_data_bucket") or f"fabperf-{self.env}-{self.eid}")

    def _prefix(self) -> str:
        return f"fabperf/{self.env}-{self.eid}/"

    def _upload(self, host: str, data: bytes) -> tuple[str, str]:
        """Put one host's user-data into the private, encrypted bucket; recorded at once."""
        bucket = self._ensure_bucket()
        key = f"{self._prefix()}{host}.user-data"
        if data[:2] != b"\x1f\x8b":        # the boot script gunzips what it fetches
            data = gzip.compress(data, compresslevel=9, mtime=0)
        s3 = self.client("s3")
        enc: dict[str, Any] = {"ServerSideEncryption": "AES256"}
        if self.settings.get("kms_key_id"):
            enc = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.settings["kms_key_id"]}
        self.store.update_host(host, resources={"s3_key": key})
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/gzip",
                      **enc)
        return bucket, key

    def _ensure_bucket(self) -> str:
        """The bucket, made (idempotently) by this process before it is trusted: a record
        in the state is not proof that it exists (a SIGKILL between the two, a
        --keep-on-failure of a failed create). Recorded once it exists."""
        with self._lock:
            bucket = self.bucket_name()
            if "bucket" in self._made:
                return bucket
            s3 = self.client("s3")
            own = not self.settings.get("user_data_bucket")
            if own:
                args: dict[str, Any] = {"Bucket": bucket}
                region = str(self.settings["region"])
                if region != "us-east-1":
                    args["CreateBucketConfiguration"] = {"LocationConstraint": region}
                try:
                    s3.create_bucket(**args)
                except Exception as exc:
                    if _code(exc) != "BucketAlreadyOwnedByYou":
                        raise
                s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True, "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
                s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault":
                               {"SSEAlgorithm": "AES256"}}]})
                s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": self._tags()})
            state = self._state()
            self.store.update(network={**state.network, "bucket": bucket,
                                       "bucket_owned": own})
            self._made.add("bucket")
            return bucket

    def role_name(self) -> str:
        return f"fabperf-{self.env}-{self.eid}-ud"

    def _instance_profile(self, bucket: str) -> str:
        """A role that may read only this environment's user-data objects, in a profile."""
        name = self.role_name()
        with self._lock:
            if "role" in self._made:       # made (idempotently) by this process, as the bucket
                return name
            iam = self.client("iam")
            trust = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole"}]}
            read = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{self._prefix()}*"}]}
            iam_tags = self._tags()
            _ignore(lambda: iam.create_role(RoleName=name, Path=IAM_PATH,
                                            AssumeRolePolicyDocument=json.dumps(trust),
                                            MaxSessionDuration=3600, Tags=iam_tags),
                    "EntityAlreadyExists")
            iam.put_role_policy(RoleName=name, PolicyName="read-user-data",
                                PolicyDocument=json.dumps(read))
            _ignore(lambda: iam.create_instance_profile(InstanceProfileName=name, Path=IAM_PATH,
                                                        Tags=iam_tags), "EntityAlreadyExists")
            _ignore(lambda: iam.add_role_to_instance_profile(InstanceProfileName=name,
                                                             RoleName=name), "LimitExceeded")
            state = self._state()
            self.store.update(network={**state.network, "instance_profile": name})
            self._made.add("role")
            return name

    def _drop_user_data(self, hosts: Iterable[str] | None = None) -> list[str]:
        """Delete user-data objects (all of the environment, or some hosts'); [] if none."""
        state = self.store.load()
        bucket = (state.network.get("bucket") if state else None) or self.bucket_name()
        s3 = self.client("s3")
        try:
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=self._prefix()).get("Contents", [])
        except Exception as exc:
            if _code(exc) in ("NoSuchBucket", "404", "AccessDenied"):
                return []
            raise
        keys = [o["Key"] for o in listed]
        if hosts is not None:
            wanted = {f"{self._prefix()}{h}.user-data" for h in hosts}
            keys = [k for k in keys if k in wanted]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
        return [f"s3://{bucket}/{k}" for k in keys]

    # --- waiting -------------------------------------------------------------------
    @api_errors
    def wait_running(self, hosts: Sequence[str]) -> None:
        """The instance-running waiter; records each instance's addresses."""
        state = self._state()
        ids = {state.hosts[h].resources["instance"]: h for h in hosts
               if state.hosts.get(h) and state.hosts[h].resources.get("instance")}
        missing = [h for h in hosts if h not in ids.values()]
        if missing:
            raise ExternalError(f"hosts {', '.join(missing)} have no instance")
        delay = self.poll
        waiter = self.ec2.get_waiter("instance_running")
        chunks = [list(ids)[i:i + 100] for i in range(0, len(ids), 100)]
        for chunk in chunks:
            try:
                waiter.wait(InstanceIds=chunk, WaiterConfig={
                    "Delay": max(delay, 0.2), "MaxAttempts": max(1, int(600 / max(delay, 1)))})
            except Exception as exc:
                raise ExternalError(f"instances did not reach running: {exc}") from exc
            res = self.ec2.describe_instances(InstanceIds=chunk)["Reservations"]
            for inst in (i for r in res for i in r["Instances"]):
                h = ids[inst["InstanceId"]]
                extra = {"public_ip": inst["PublicIpAddress"]} \
                    if inst.get("PublicIpAddress") else {}
                self.store.update_host(h, phase=Phase.RUNNING, resources=extra)

    def console(self, host: str, lines: int) -> str:
        """The tail of an instance's console output (for the error of a failed host)."""
        h = self._state().hosts.get(host)
        iid = h.resources.get("instance") if h else None
        if not iid:
            return ""
        try:
            out = self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output", "")
        except Exception as exc:  # the console is a diagnostic only
            return f"(no console output: {exc})"
        try:
            text = base64.b64decode(out).decode(errors="replace") if out else ""
        except ValueError:
            text = str(out)
        return "\n".join(text.replace("\r", "").splitlines()[-lines:])

    def _after_ready(self, hosts: Sequence[str]) -> None:
        self._drop_user_data(hosts)      # read at boot; not needed any more

    # --- leaks and destroy -----------------------------------------------------------
    def _tagged(self, filters: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        ec2 = self.ec2
        live = {"Name": "instance-state-name", "Values": list(LIVE_STATES)}
        inst = [i for page in ec2.get_paginator("describe_instances").paginate(
                    Filters=[*filters, live])
                for r in page["Reservations"] for i in r["Instances"]]
        enis = [e for page in ec2.get_paginator("describe_network_interfaces").paginate(
                    Filters=filters) for e in page["NetworkInterfaces"]]
        vols = [v for page in ec2.get_paginator("describe_volumes").paginate(Filters=filters)
                for v in page["Volumes"]]
        return {"instance": inst, "eni": enis, "volume": vols}

    @api_errors
    def find_leaked(self) -> list[Leaked]:
        """Instances, ENIs and volumes tagged with this environment the state does not list."""
        known = self.known_ids(self.store.load())
        found = self._tagged(self._filters())
        ids = {"instance": "InstanceId", "eni": "NetworkInterfaceId", "volume": "VolumeId"}
        out = []
        for kind, items in found.items():
            for item in items:
                ident = item[ids[kind]]
                if ident not in known and not (kind == "volume" and item.get("Attachments")):
                    out.append(Leaked(kind, ident, _tag(item, f"{TAG}:host")))
        return out

    def _remove(self, state: EnvState | None,
                leaked: Sequence[Leaked]) -> tuple[list[str], list[str]]:
        """Instances, ENIs, volumes, user-data objects, the bucket and the role."""
        def of(kind: str) -> set[str]:
            return self.listed(state, kind) | {x.ident for x in leaked if x.kind == kind}
        removed, errors = remove_ec2(self.ec2, of("instance"), of("eni"), of("volume"),
                                     self._filters(), self.poll, self.max_parallel)
        try:
            removed += self._drop_user_data()
            removed += self._drop_bucket_and_role(state)
        except Exception as exc:  # reported, the state keeps the record
            errors.append(f"user-data bucket/role: {exc}")
        return removed, errors

    def _drop_bucket_and_role(self, state: EnvState | None) -> list[str]:
        """The environment's own bucket (never a `user_data_bucket`: the user's) and role."""
        removed = []
        if not self.settings.get("user_data_bucket"):
            bucket = self.bucket_name()
            try:
                self.client("s3").delete_bucket(Bucket=bucket)
                removed.append(f"bucket {bucket}")
            except Exception as exc:
                if _code(exc) not in ("NoSuchBucket", "404"):
                    raise
        if remove_role(self.client("iam"), self.role_name()):
            removed.append(f"instance profile {self.role_name()}")
        return removed

    def _remove_hosts(self, state: EnvState, names: Sequence[str]) -> tuple[list[str], list[str]]:
        hs = [state.hosts[n] for n in names if n in state.hosts]
        instances = {h.resources["instance"] for h in hs if h.resources.get("instance")}
        tagged = {i["InstanceId"] for n in names
                  for i in self._tagged(self._filters(n))["instance"]}
        enis = {h.resources["eni"] for h in hs if h.resources.get("eni")}
        removed, errors = remove_ec2(self.ec2, instances | tagged, enis, set(), None, self.poll,
                                     self.max_parallel)
        return removed + self._drop_user_data(names), errors

    reserve = api_errors(CloudProvider.reserve)
    wait_ready = api_errors(CloudProvider.wait_ready)
    destroy = api_errors(CloudProvider.destroy)
    destroy_hosts = api_errors(CloudProvider.destroy_hosts)


def _allows(perms: Sequence[Mapping[str, Any]], port: int, cidr: str, groups: set[str]) -> bool:
    """Whether an ingress permission lets ``cidr`` (or a member of ``groups``) reach TCP
    ``port``: protocol tcp or all, the port in its range, a source range holding ``cidr``
    or a source group among ``groups``."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    for p in perms:
        proto = str(p.get("IpProtocol", ""))
        if proto not in ("tcp", "6", "-1"):
            continue
        if proto != "-1" and not (int(p.get("FromPort", -1)) <= port <= int(p.get("ToPort", -1))):
            continue
        for r in p.get("IpRanges", []):
            try:
                if net.subnet_of(ipaddress.IPv4Network(r.get("CidrIp", ""), strict=False)):
                    return True
            except (TypeError, ValueError):
                continue
        if any(g.get("GroupId") in groups for g in p.get("UserIdGroupPairs", [])):
            return True
    return False


def _tag(item: Mapping[str, Any], key: str) -> str:
    for t in item.get("Tags", item.get("TagSet", [])) or []:
        if t["Key"] == key:
            return str(t["Value"])
    return ""


def _ignore(call: Callable[[], Any], *codes: str) -> Any:
    try:
        return call()
    except Exception as exc:
        if _code(exc) not in codes:
            raise
        return None


def find_image(ec2: Any, fingerprint: str) -> str | None:
    """The newest available AMI of ours tagged fabperf:fingerprint=<fingerprint>."""
    images = ec2.describe_images(Owners=["self"], Filters=[
        {"Name": f"tag:{TAG}:fingerprint", "Values": [fingerprint]},
        {"Name": "state", "Values": ["available"]}])["Images"]
    if not images:
        return None
    return str(max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"])


def remove_ec2(ec2: Any, instances: set[str], enis: set[str], volumes: set[str],
               filters: list[dict[str, Any]] | None, delay: float,
               width: int = 10) -> tuple[list[str], list[str]]:
    """Terminate instances (waiting for terminated), then delete ENIs and loose volumes,
    ``width`` at once (one call each: 100 ENIs one by one under throttling took minutes).

    Anything already gone counts as removed. With ``filters``, volumes still tagged after
    termination are deleted too.
    """
    removed: list[str] = []
    errors: list[str] = []
    alive = sorted(instances)
    for i in range(0, len(alive), 100):
        chunk = alive[i:i + 100]
        try:
            ec2.terminate_instances(InstanceIds=chunk)
        except Exception as exc:
            if not _code(exc).startswith("InvalidInstanceID"):
                errors.append(f"terminate {', '.join(chunk)}: {exc}")
                continue
            for one in chunk:       # some are gone: terminate the rest one by one
                _ignore(functools.partial(ec2.terminate_instances, InstanceIds=[one]),
                        "InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed")
        try:
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=chunk, WaiterConfig={"Delay": max(delay, 0.2), "MaxAttempts": 120})
        except Exception as exc:
            if "InvalidInstanceID" not in str(exc):
                errors.append(f"waiting for {', '.join(chunk)} to terminate: {exc}")
        removed += [f"instance {x}" for x in chunk]
    def delete(kind: str, call: Callable[[str], Any], gone: str) -> Callable[[str], None]:
        def one(ident: str) -> None:
            try:
                call(ident)
                removed.append(f"{kind} {ident}")      # list.append: atomic across threads
            except Exception as exc:  # each one reported, the others go on
                if _code(exc) != gone:
                    errors.append(f"{kind} {ident}: {exc}")
        return one

    parallel(delete("eni", lambda i: ec2.delete_network_interface(NetworkInterfaceId=i),
                    "InvalidNetworkInterfaceID.NotFound"), sorted(enis), width)
    if filters is not None:
        volumes = volumes | {v["VolumeId"] for v in ec2.describe_volumes(
            Filters=[*filters, {"Name": "status", "Values": ["available"]}])["Volumes"]}
    parallel(delete("volume", lambda i: ec2.delete_volume(VolumeId=i), "InvalidVolume.NotFound"),
             sorted(volumes), width)
    return removed, errors


def remove_role(iam: Any, name: str) -> bool:
    """Delete an instance profile and its role (False when there was none)."""
    try:
        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)
    except Exception as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    gone = _ignore(lambda: iam.delete_instance_profile(InstanceProfileName=name),
                   "NoSuchEntity") is None
    _ignore(lambda: iam.delete_role_policy(RoleName=name, PolicyName="read-user-data"),
            "NoSuchEntity")
    role_gone = _ignore(lambda: iam.delete_role(RoleName=name), "NoSuchEntity") is None
    return not (gone and role_gone)


# --- launch gc -----------------------------------------------------------------------------

@api_errors
def collect(settings: Mapping[str, Any], live: Callable[[str, str], bool],
            older_than_hours: float, now: _dt.datetime | None = None) -> list[Garbage]:
    """fabperf resources whose environment is gone (``live(env, env_id)`` is False) or whose
    TTL passed, older than ``older_than_hours``."""
    now = now or _now()
    ec2 = connect(settings, "ec2")
    probe = AwsProvider.__new__(AwsProvider)     # only for _tagged's paginators
    probe._clients, probe._lock, probe.settings = {"ec2": ec2}, threading.RLock(), dict(settings)
    found = probe._tagged([{"Name": "tag-key", "Values": [f"{TAG}:env-id"]}])
    ids = {"instance": "InstanceId", "eni": "NetworkInterfaceId", "volume": "VolumeId"}
    out = []
    for kind, items in found.items():
        for item in items:
            if kind == "volume" and item.get("Attachments"):
                continue             # goes with its instance
            g = _garbage(kind, item[ids[kind]], item, live, older_than_hours, now)
            if g is not None:
                out.append(g)
    s3 = connect(settings, "s3")
    for b in s3.list_buckets().get("Buckets", []):
        if not b["Name"].startswith("fabperf-"):
            continue
        try:
            tagset = s3.get_bucket_tagging(Bucket=b["Name"])
        except Exception:  # untagged: not ours
            continue
        g = _garbage("bucket", b["Name"], tagset, live, older_than_hours, now)
        if g is not None:
            out.append(g)
    iam = connect(settings, "iam")
    for role in iam.list_roles(PathPrefix=IAM_PATH).get("Roles", []):
        tagged = iam.list_role_tags(RoleName=role["RoleName"])
        g = _garbage("role", role["RoleName"], tagged, live, older_than_hours, now)
        if g is not None:
            out.append(g)
    return out


def _garbage(kind: str, ident: str, item: Mapping[str, Any], live: Callable[[str, str], bool],
             older_than_hours: float, now: _dt.datetime) -> Garbage | None:
    return garbage("aws", kind, ident, environment=_tag(item, f"{TAG}:environment"),
                   env=_tag(item, f"{TAG}:env-id"), created=_tag(item, f"{TAG}:created-at"),
                   ttl=_tag(item, f"{TAG}:ttl-hours"), live=live,
                   older_than_hours=older_than_hours, now=now)


@api_errors
def remove_garbage(settings: Mapping[str, Any], garbage: Sequence[Garbage]) -> list[str]:
    """Remove what `collect` found (instances first, then ENIs, volumes, buckets, roles)."""
    ec2 = connect(settings, "ec2")
    by = {k: {g.ident for g in garbage if g.kind == k}
          for k in ("instance", "eni", "volume", "bucket", "role")}
    removed, errors = remove_ec2(ec2, by["instance"], by["eni"], by["volume"], None,
                                 float(settings.get("poll_seconds", 5)))
    s3 = connect(settings, "s3")
    for bucket in sorted(by["bucket"]):
        objs = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        if objs:
            s3.delete_objects(Bucket=bucket,
                              Delete={"Objects": [{"Key": o["Key"]} for o in objs]})
        s3.delete_bucket(Bucket=bucket)
        removed.append(f"bucket {bucket}")
    iam = connect(settings, "iam")
    for role in sorted(by["role"]):
        remove_role(iam, role)
        removed.append(f"role {role}")
    if errors:
        raise ExternalError("gc could not remove everything:\n  " + "\n  ".join(errors))
    return removed


def located(settings: Mapping[str, Any]) -> str:
    """Where `collect` asks ("aws eu-west-1"; InputError when no region is named)."""
    ep = settings.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL", "")
    return f"aws {region_of(settings)}" + (f" at {ep}" if ep else "")


AwsProvider.collect = staticmethod(collect)                # type: ignore[attr-defined]
AwsProvider.located = staticmethod(located)                # type: ignore[attr-defined]
AwsProvider.remove_garbage = staticmethod(remove_garbage)  # type: ignore[attr-defined]
