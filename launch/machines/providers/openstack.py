"""The OpenStack provider: an environment's hosts as Nova servers (openstacksdk, lazily).

Per environment, each recorded in the state the moment it exists and tagged at creation
(tags fabperf, fabperf-env=<env>, fabperf-env-id=<id>, fabperf-host=<host>,
fabperf-created=<UTC time>, fabperf-ttl=<hours>; the server also carries them as metadata):
- before anything is created: the `security_groups` must let every host reach every role
  port of the plan (launch.providers.base.ROLE_PORTS and SSH) from network.cidr (an
  ingress rule whose remote range holds it, or whose remote group is one of them); `up`
  names the missing ports (exit 2). The fixed IPs other ports hold on the subnet are left
  out of the plan (two environments can share a network);
- reserve: one Neutron port per host with the plan's fixed IP on the subnet of `network`
  (the one whose range is network.cidr, or `subnet`), with `security_groups`; a recorded
  port that is gone is made again (`up` reconciles);
- create: a server on that port from the Glance image (settings `images:`, the bake manifest,
  or the image carrying the fabperf-fp-<fingerprint> tag bake gives it), the flavor of the
  host's role, user_data (base64; config drive when `config_drive`), optional floating IP
  from `floating_network`. At most `max_parallel` creates run at once;
- readiness: ACTIVE (ERROR fails at once), then SSH to the fixed IP (`readiness: private`),
  the floating IP (`floating`) or through `ssh_jump` (`jump`); the console log is in the
  error of a host that fails.

`down` deletes what the state lists plus every server, port and floating IP tagged with the
environment's id; `launch gc` finds those whose environment is gone or whose TTL passed.
A 429 or 503 from any service is retried (keystoneauth's status-code retries, honouring
Retry-After), as is a failed connection: one busy moment does not roll back an `up`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
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
    plan_hosts,
)
from launch.machines.providers.cloud import CloudProvider, garbage, require_open_ports
from launch.machines.state import EnvState, HostState, Phase
from launch.render.plan import Plan
from launch.spec.contract import Role

log = logging.getLogger("fabperf.openstack")

DEFAULT_FLAVORS = {"peer": "m1.xlarge", "orderer": "m1.large", "caliper": "m1.xlarge",
                   "monitor": "m1.large"}
# Instruments every connection the provider makes (tests count calls here).
CONNECT_HOOKS: list[Callable[[Any], None]] = []
# keystoneauth retries these answers (429, 503) this many times, with a doubling delay
# from 0.5 s (or the Retry-After the cloud sends), and a refused connection as often.
STATUS_CODE_RETRIES = 8
CONNECT_RETRIES = 4

SETTINGS: tuple[inputs.Rule, ...] = (
    inputs.Rule("cloud", str, "", pattern=r"[\w.-]*",
                doc="clouds.yaml entry (default: $OS_CLOUD / OS_* variables)"),
    inputs.Rule("network", str, pattern=r"[\w.-]+", doc="the Neutron network (name or id)"),
    inputs.Rule("subnet", str, "", pattern=r"[\w.-]*",
                doc="its subnet (default: the one whose range is network.cidr)"),
    inputs.Rule("security_groups", list, [], maximum=10, why="one port, a few groups"),
    inputs.Rule("key_name", str, "", pattern=r"[\w .@-]{0,255}",
                doc="a Nova key pair (optional: the environment's own key is in user-data)"),
    inputs.Rule("flavors", dict, {}, doc="role -> flavor name"),
    inputs.Rule("images", dict, {}, doc="image -> Glance id (else manifest, else fingerprint)"),
    inputs.Rule("config_drive", bool, False, doc="user-data on a config drive too"),
    inputs.Rule("floating_network", str, "", pattern=r"[\w.-]*",
                doc="external network for a floating IP per host (default: none)"),
    inputs.Rule("ttl_hours", (int, float), 24, minimum=0.1, maximum=24 * 30,
                why="`launch gc` removes what outlives it"),
    inputs.Rule("max_parallel", int, 5, minimum=1, maximum=50, why="Nova API rate limits"),
    inputs.Rule("readiness", str, "private", choices=("private", "floating", "jump")),
    inputs.Rule("ssh_jump", str, "", pattern=r"([\w.-]+@)?[\w.-]+(:\d+)?|"),
    inputs.Rule("poll_seconds", (int, float), 5, minimum=0, maximum=60),
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(tz=_dt.UTC)


def tags(environment: str, eid: str, ttl_hours: float, host: str | None = None) -> list[str]:
    """Tags of every resource (Neutron and Nova tags are plain strings)."""
    out = ["fabperf", f"fabperf-env={environment}", f"fabperf-env-id={eid}",
           f"fabperf-created={_now().isoformat(timespec='seconds')}",
           f"fabperf-ttl={ttl_hours:g}"]
    if host is not None:
        out.append(f"fabperf-host={host}")
    return out


def tag_value(item_tags: Sequence[str], key: str) -> str:
    for t in item_tags or ():
        if t.startswith(f"{key}="):
            return t.partition("=")[2]
    return ""


def connect(settings: Mapping[str, Any]) -> Any:
    """An openstacksdk connection to the settings' cloud."""
    try:
        import openstack
    except ImportError as exc:
        raise InputError("provider openstack needs openstacksdk",
                         hint="pip install 'fabperf[openstack]'") from exc
    cloud = str(settings.get("cloud") or "") or None
    try:
        conn = openstack.connect(cloud=cloud, status_code_retries=STATUS_CODE_RETRIES,
                                 retriable_status_codes=[429, 503],
                                 connect_retries=CONNECT_RETRIES)
    except Exception as exc:  # config errors of the SDK
        raise InputError(f"openstack cloud {cloud!r}: {exc}",
                         hint="add the cloud to clouds.yaml (see README)") from exc
    for hook in CONNECT_HOOKS:
        hook(conn)
    return conn


def api_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A failed OpenStack call is an ExternalError (exit 1) naming what failed."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            mod = type(exc).__module__
            if mod.startswith(("openstack", "keystoneauth1", "requests")):
                raise ExternalError(f"OpenStack: {type(exc).__name__}: {exc}") from exc
            raise
    return wrapper


def _not_found(exc: BaseException) -> bool:
    return type(exc).__name__ in ("NotFoundException", "ResourceNotFound")


class OpenStackProvider(CloudProvider):
    """Provider for an OpenStack cloud (see the module docstring)."""

    name = "openstack"
    SETTINGS = SETTINGS
    PUBLIC = "floating"
    DEFAULT_PARALLEL = 5

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        self._conn: Any = None
        self._flavors: dict[str, str] = {}

    @property
    def conn(self) -> Any:
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.settings)
            return self._conn

    def _tags(self, host: str | None = None) -> list[str]:
        return tags(self.env, self.eid, self.ttl, host)

    def where(self) -> str:
        """The cloud asked (clouds.yaml entry, or the OS_* variables)."""
        return located(self.settings)

    # --- sizing and images -----------------------------------------------------------
    @api_errors
    def host_requests(self, plan: Plan, only: Sequence[str] = ()) -> list[HostRequest]:
        """Per host: the flavor of its (first) role and its Glance image."""
        flavors = {**DEFAULT_FLAVORS, **dict(self.settings.get("flavors") or {})}
        for role, f in flavors.items():
            if role not in DEFAULT_FLAVORS or not isinstance(f, str) or not f:
                raise InputError.field(None, f"settings.flavors.{role}",
                                       f"a flavor name for one of {sorted(DEFAULT_FLAVORS)}", f)
        out = []
        for h in plan_hosts(plan, only):
            roles = tuple(r.value for r in h.roles)
            out.append(HostRequest(name=h.name, roles=roles, image=self.image_for(h),
                                   address=h.address, size=flavors[roles[0]]))
        self.check_security_groups({Role(r) for h in plan.hosts for r in h.roles})
        return out

    @api_errors
    def check_security_groups(self, roles: Any) -> None:
        """The groups must let network.cidr reach SSH and every role port (InputError
        naming the missing ports): checked before anything is created."""
        if not self.ctx.cidr:
            return
        # no groups given: Neutron puts the ports in the project's "default" group
        names = [str(g) for g in self.settings.get("security_groups") or []] or ["default"]
        groups = []
        for g in names:
            found = self.conn.network.find_security_group(g, ignore_missing=True)
            if found is None:
                raise InputError.field(None, "settings.security_groups",
                                       "existing security groups", g)
            groups.append(found)
        rules = [r for g in groups for r in (g.security_group_rules or [])]
        ids = {g.id for g in groups}
        cidr = self.ctx.cidr
        require_open_ports("openstack", "security_groups", names, roles, cidr,
                           lambda port: _allows(rules, port, cidr, ids))

    @api_errors
    def addresses_in_use(self) -> set[str]:
        """Fixed IPs other ports (not this environment's) hold on the subnet."""
        net, subnet = self._find_network()
        busy: set[str] = set()
        for port in self.conn.network.ports(network_id=net.id):
            if f"fabperf-env-id={self.eid}" in (port.tags or []):
                continue
            busy |= {ip["ip_address"] for ip in port.fixed_ips or []
                     if ip.get("subnet_id") in (None, subnet.id)}
        return busy

    def image_for(self, host: Any) -> str:
        """The Glance image: settings `images:`, the plan / manifest, else by fingerprint."""
        given = dict(self.settings.get("images") or {}).get(host.image) or host.image_id \
            or manifest_artifact(host.image, "openstack", "image_id", self.ctx.build_dir)
        if given:
            return str(given)
        fp = self._fingerprint(host.image)
        found = find_image(self.conn, fp) if fp else None
        if found:
            return found
        raise InputError(f"image {host.image} has no Glance image: not in settings.images, "
                         f"not in the bake manifest, none tagged fabperf-fp-{fp or '?'}",
                         hint=f"run `bake build --provider openstack --image {host.image}`")

    def _fingerprint(self, image: str) -> str | None:
        return bake_fingerprint(self.ctx, "openstack", image)

    # --- reserve -------------------------------------------------------------------
    def _network(self) -> tuple[str, str]:
        with self._lock:
            state = self._state()
            if state.network.get("network_id") and state.network.get("subnet_id"):
                return str(state.network["network_id"]), str(state.network["subnet_id"])
            net, subnet = self._find_network()
            self.store.update(network={**state.network, "network_id": net.id,
                                       "subnet_id": subnet.id})
            return str(net.id), str(subnet.id)

    def _find_network(self) -> tuple[Any, Any]:
        """The network and its subnet (InputError when either is not there)."""
        with self._lock:
            net = self.conn.network.find_network(self.settings["network"], ignore_missing=True)
            if net is None:
                raise InputError.field(None, "settings.network", "an existing network",
                                       self.settings["network"])
            want = self.settings.get("subnet") or ""
            subnet = None
            for s in self.conn.network.subnets(network_id=net.id):
                if (want and want in (s.id, s.name)) or (not want and s.cidr == self.ctx.cidr):
                    subnet = s
                    break
            if subnet is None:
                raise InputError.field(None, "settings.subnet",
                                       f"a subnet of {net.name} with range {self.ctx.cidr}",
                                       want or None)
            return net, subnet

    def _before_reserve(self) -> None:
        self._network()

    def _reserve_one(self, req: HostRequest) -> None:
        # the port the tags find, not the one the state records: it may be gone (deleted
        # behind our back, or with a rollback), and then it is made again (a reconcile)
        cur = self._state().hosts.get(req.name)
        recorded = cur.resources.get("port") if cur is not None else None
        net_id, subnet_id = self._network()
        mine = f"fabperf-env-id={self.eid},fabperf-host={req.name}"
        found = sorted(self.conn.network.ports(tags=mine), key=lambda p: p.id != recorded)
        if found:
            port = found[0]
            if recorded and port.id == recorded:
                return
        else:
            if recorded:
                log.warning("%s: its port %s is gone; making another", req.name, recorded)
            sgs = [self.conn.network.find_security_group(g, ignore_missing=False).id
                   for g in self.settings.get("security_groups") or []]
            port = self.conn.network.create_port(
                network_id=net_id, name=f"fabperf-{self.env}-{req.name}",
                fixed_ips=[{"subnet_id": subnet_id, "ip_address": req.address}],
                security_group_ids=sgs, tags=self._tags(req.name))
        address = port.fixed_ips[0]["ip_address"]
        self.store.update_host(req.name, address=address, roles=req.roles, image=req.image,
                               phase=Phase.RESERVED, resources={"port": port.id})

    # --- create --------------------------------------------------------------------
    @api_errors
    def alive(self, host: HostState) -> bool:
        sid = host.resources.get("server")
        if not sid:
            return False
        try:
            server = self.conn.compute.get_server(sid)
        except Exception as exc:
            if _not_found(exc):
                return False
            raise
        return str(server.status) in ("ACTIVE", "BUILD")

    def _flavor(self, name: str) -> str:
        with self._lock:
            if name not in self._flavors:
                flavor = self.conn.compute.find_flavor(name, ignore_missing=True)
                if flavor is None:
                    raise InputError.field(None, "settings.flavors", "an existing flavor", name)
                self._flavors[name] = flavor.id
            return self._flavors[name]

    @api_errors
    def create(self, host: HostRequest, user_data: bytes) -> None:
        """A server on the host's port (optionally a floating IP)."""
        cur = self._state().hosts.get(host.name)
        if cur is None or not cur.resources.get("port"):
            raise ExternalError(f"host {host.name}: create before reserve")
        if self.alive(cur):
            return
        self.store.update_host(host.name, phase=Phase.CREATING, error="",
                               user_data_sha256=hashlib.sha256(user_data).hexdigest())
        tagged = self._tags(host.name)
        meta = {t.partition("=")[0]: t.partition("=")[2] or "true" for t in tagged}
        attrs: dict[str, Any] = dict(
            name=f"fabperf-{self.env}-{host.name}", image_id=host.image,
            flavor_id=self._flavor(host.size), networks=[{"port": cur.resources["port"]}],
            user_data=base64.b64encode(user_data).decode(), metadata=meta, tags=tagged,
            config_drive=bool(self.settings.get("config_drive")))
        if self.settings.get("key_name"):
            attrs["key_name"] = self.settings["key_name"]
        server = self.conn.compute.create_server(**attrs)
        self.store.update_host(host.name, resources={"server": server.id})
        if self.settings.get("floating_network"):
            ext = self.conn.network.find_network(self.settings["floating_network"],
                                                 ignore_missing=False)
            fip = self.conn.network.create_ip(floating_network_id=ext.id,
                                              port_id=cur.resources["port"],
                                              tags=self._tags(host.name))
            self.store.update_host(host.name, resources={"floating_ip": fip.id,
                                                         "public_ip": fip.floating_ip_address})
        log.info("%s: server %s (%s)", host.name, server.id, host.size)

    # --- waiting -------------------------------------------------------------------
    @api_errors
    def wait_running(self, hosts: Sequence[str]) -> None:
        """ACTIVE (ERROR fails at once)."""
        state = self._state()
        delay = self.poll
        for h in hosts:
            sid = state.hosts[h].resources.get("server") if h in state.hosts else None
            if not sid:
                raise ExternalError(f"host {h} has no server")
            try:
                self.conn.compute.wait_for_server(self.conn.compute.get_server(sid),
                                                  status="ACTIVE", failures=["ERROR"],
                                                  interval=max(delay, 0.1), wait=900)
            except Exception as exc:
                raise ExternalError(f"server of {h} did not become ACTIVE: {exc}") from exc
            self.store.update_host(h, phase=Phase.RUNNING)

    def console(self, host: str, lines: int) -> str:
        h = self._state().hosts.get(host)
        sid = h.resources.get("server") if h else None
        if not sid:
            return ""
        try:
            out = self.conn.compute.get_server_console_output(sid, length=lines)
        except Exception as exc:  # a diagnostic only
            return f"(no console output: {exc})"
        return str(out.get("output", "")) if isinstance(out, Mapping) else str(out)

    # --- leaks and destroy -----------------------------------------------------------
    def _tagged(self, tag: str) -> dict[str, list[Any]]:
        c = self.conn
        return {"server": list(c.compute.servers(tags=tag)),
                "port": list(c.network.ports(tags=tag)),
                "floating_ip": list(c.network.ips(tags=tag))}

    @api_errors
    def find_leaked(self) -> list[Leaked]:
        known = self.known_ids(self.store.load())
        out = []
        for kind, items in self._tagged(f"fabperf-env-id={self.eid}").items():
            for item in items:
                if item.id not in known:
                    out.append(Leaked(kind, item.id, tag_value(item.tags, "fabperf-host")))
        return out

    def _remove(self, state: EnvState | None,
                leaked: Sequence[Leaked]) -> tuple[list[str], list[str]]:
        res = {k: self.listed(state, k) for k in ("server", "port", "floating_ip")}
        for x in leaked:
            res.setdefault(x.kind, set()).add(x.ident)
        return remove_resources(self.conn, res, self.poll)

    def _remove_hosts(self, state: EnvState, names: Sequence[str]) -> tuple[list[str], list[str]]:
        hs = [state.hosts[n] for n in names if n in state.hosts]
        res = {k: {h.resources[k] for h in hs if h.resources.get(k)}
               for k in ("server", "port", "floating_ip")}
        for n in names:
            for kind, items in self._tagged(f"fabperf-env-id={self.eid},"
                                            f"fabperf-host={n}").items():
                res[kind] |= {i.id for i in items}
        return remove_resources(self.conn, res, self.poll)

    reserve = api_errors(CloudProvider.reserve)
    wait_ready = api_errors(CloudProvider.wait_ready)
    destroy = api_errors(CloudProvider.destroy)
    destroy_hosts = api_errors(CloudProvider.destroy_hosts)


def _allows(rules: Sequence[Mapping[str, Any]], port: int, cidr: str, groups: set[str]) -> bool:
    """Whether a Neutron ingress rule lets ``cidr`` (or a member of ``groups``) reach TCP
    ``port`` (protocol tcp or any, the port in its range, a remote range holding ``cidr``,
    no remote at all, or a remote group among ``groups``)."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    for r in rules:
        if r.get("direction") != "ingress" or r.get("ethertype", "IPv4") != "IPv4":
            continue
        if r.get("protocol") not in (None, "tcp", "6", "any"):
            continue
        low, high = r.get("port_range_min"), r.get("port_range_max")
        if low is not None and not (int(low) <= port <= int(high if high is not None else low)):
            continue
        prefix, group = r.get("remote_ip_prefix"), r.get("remote_group_id")
        if group is not None:
            if group in groups:
                return True
            continue
        if prefix is None:
            return True
        try:
            if net.subnet_of(ipaddress.IPv4Network(prefix, strict=False)):
                return True
        except (TypeError, ValueError):
            continue
    return False


def find_image(conn: Any, fingerprint: str) -> str | None:
    """The active Glance image bake tagged fabperf-fp-<fingerprint> (property checked too)."""
    for img in conn.image.images(tag=f"fabperf-fp-{fingerprint}"):
        props = dict(getattr(img, "properties", None) or {})
        if props.get("fabperf:fingerprint", fingerprint) == fingerprint \
                and str(img.status) == "active":
            return str(img.id)
    return None


def remove_resources(conn: Any, res: Mapping[str, set[str]],
                     delay: float) -> tuple[list[str], list[str]]:
    """Floating IPs, then servers (waiting until they are gone), then ports."""
    removed: list[str] = []
    errors: list[str] = []

    def gone(call: Callable[[], Any], label: str) -> None:
        try:
            call()
            removed.append(label)
        except Exception as exc:
            if not _not_found(exc):
                errors.append(f"{label}: {exc}")

    for fip in sorted(res.get("floating_ip", ())):
        gone(functools.partial(conn.network.delete_ip, fip, ignore_missing=True),
             f"floating ip {fip}")
    servers = sorted(res.get("server", ()))
    for sid in servers:
        gone(functools.partial(conn.compute.delete_server, sid, ignore_missing=True),
             f"server {sid}")
    for sid in servers:
        try:
            server = conn.compute.get_server(sid)
            conn.compute.wait_for_delete(server, interval=max(delay, 0.1), wait=600)
        except Exception as exc:
            if not _not_found(exc):
                errors.append(f"server {sid} not deleted: {exc}")
    for pid in sorted(res.get("port", ())):
        gone(functools.partial(conn.network.delete_port, pid, ignore_missing=True), f"port {pid}")
    return removed, errors


# --- launch gc -----------------------------------------------------------------------------

@api_errors
def collect(settings: Mapping[str, Any], live: Callable[[str, str], bool],
            older_than_hours: float, now: _dt.datetime | None = None) -> list[Garbage]:
    """fabperf servers, ports and floating IPs whose environment is gone or TTL passed."""
    now = now or _now()
    conn = connect(settings)
    out = []
    probe = OpenStackProvider.__new__(OpenStackProvider)
    probe._conn, probe._lock = conn, threading.RLock()
    for kind, items in probe._tagged("fabperf").items():
        for item in items:
            g = garbage("openstack", kind, item.id,
                        environment=tag_value(item.tags, "fabperf-env"),
                        env=tag_value(item.tags, "fabperf-env-id"),
                        created=tag_value(item.tags, "fabperf-created"),
                        ttl=tag_value(item.tags, "fabperf-ttl"), live=live,
                        older_than_hours=older_than_hours, now=now)
            if g is not None:
                out.append(g)
    return out


@api_errors
def remove_garbage(settings: Mapping[str, Any], garbage: Sequence[Garbage]) -> list[str]:
    """Remove what `collect` found."""
    res: dict[str, set[str]] = {}
    for g in garbage:
        res.setdefault(g.kind, set()).add(g.ident)
    removed, errors = remove_resources(connect(settings), res,
                                       float(settings.get("poll_seconds", 5)))
    if errors:
        raise ExternalError("gc could not remove everything:\n  " + "\n  ".join(errors))
    return removed


def located(settings: Mapping[str, Any]) -> str:
    """Where `collect` asks (the clouds.yaml entry, or the OS_* variables)."""
    cloud = settings.get("cloud") or os.environ.get("OS_CLOUD", "")
    return f"openstack cloud {cloud}" if cloud else "openstack (OS_* variables)"


OpenStackProvider.collect = staticmethod(collect)                # type: ignore[attr-defined]
OpenStackProvider.located = staticmethod(located)                # type: ignore[attr-defined]
OpenStackProvider.remove_garbage = staticmethod(remove_garbage)  # type: ignore[attr-defined]
