"""A small OpenStack on 127.0.0.1: enough Keystone v3, Nova, Neutron and Glance for
openstacksdk's real code paths (auth, catalog, version discovery, microversions, resource
create/list/get/delete) to run against it over HTTP.

Servers answer BUILD on their first GET and ACTIVE afterwards; a deleted server answers 404.
Faults: `fail(method, path_regex, k, status)` answers the k-th matching request with an
error (429 and 503 with a Retry-After of 0 s, as a busy API does); `on(method, path_regex,
k, fn)` calls fn at the k-th one (a Ctrl-C, a lost state).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse


class Cloud:
    """The double's data: networks, subnets, ports, floating IPs, servers, images."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.networks = {"net-lab": {"id": "net-lab", "name": "fabperf-lab", "subnets": ["sub-lab"],
                                     "status": "ACTIVE", "admin_state_up": True,
                                     "router:external": False, "tags": []},
                         "net-ext": {"id": "net-ext", "name": "public", "subnets": [],
                                     "status": "ACTIVE", "admin_state_up": True,
                                     "router:external": True, "tags": []}}
        self.subnets = {"sub-lab": {"id": "sub-lab", "name": "fabperf-lab-v4",
                                    "network_id": "net-lab", "cidr": "192.168.50.0/24",
                                    "ip_version": 4, "tags": []}}
        # as OpenStack's default group: its members reach each other on every port
        self.security_groups = {"sg-1": {"id": "sg-1", "name": "fabperf", "tags": [],
                                         "security_group_rules": [
                                             {"id": "r-1", "direction": "ingress",
                                              "ethertype": "IPv4", "protocol": None,
                                              "port_range_min": None, "port_range_max": None,
                                              "remote_ip_prefix": None,
                                              "remote_group_id": "sg-1"}]}}
        self.flavors = {f"fl-{n}": {"id": f"fl-{n}", "name": n, "vcpus": 4, "ram": 8192,
                                    "disk": 40} for n in ("m1.large", "m1.xlarge")}
        self.images: dict[str, dict[str, Any]] = {}
        self.ports: dict[str, dict[str, Any]] = {}
        self.fips: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.faults: list[dict[str, Any]] = []
        self.counts: dict[int, int] = {}
        self.fip_addresses = (f"203.0.113.{i}" for i in itertools.count(10))

    def add_image(self, name: str, tags: list[str], properties: dict[str, str]) -> str:
        iid = str(uuid.uuid4())
        self.images[iid] = {"id": iid, "name": name, "status": "active", "tags": tags,
                            "visibility": "private", **properties}
        return iid

    def fail(self, method: str, path: str, k: int, status: int = 500,
             message: str = "injected by the test") -> None:
        self.faults.append({"method": method, "path": re.compile(path), "k": k,
                            "status": status, "message": message})

    def on(self, method: str, path: str, k: int, fn: Callable[[], None]) -> None:
        self.faults.append({"method": method, "path": re.compile(path), "k": k, "fn": fn})

    def live(self, env_id: str | None = None) -> dict[str, list[Any]]:
        """What exists (optionally only what carries fabperf-env-id=<env_id>)."""
        def mine(x: dict[str, Any]) -> bool:
            return env_id is None or f"fabperf-env-id={env_id}" in x.get("tags", [])
        with self.lock:
            return {"servers": [s for s in self.servers.values() if mine(s)],
                    "ports": [p for p in self.ports.values() if mine(p)],
                    "floating_ips": [f for f in self.fips.values() if mine(f)]}


def _filter(items: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    out = items
    for key, values in query.items():
        v = values[0]
        if key == "tags":
            want = set(v.split(","))
            out = [x for x in out if want <= set(x.get("tags", []))]
        elif key == "tag":
            out = [x for x in out if all(t in x.get("tags", []) for t in values)]
        elif key in ("name", "network_id", "status", "id", "floating_network_id"):
            out = [x for x in out if str(x.get(key)) == v]
    return out


class Handler(BaseHTTPRequestHandler):
    cloud: Cloud
    base: str

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("OpenStack-API-Version", "compute 2.90")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}") if n else {}

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        path, query = url.path.rstrip("/"), parse_qs(url.query)
        c = self.cloud
        with c.lock:
            c.requests.append((method, path))
            for i, f in enumerate(c.faults):
                if f["method"] == method and f["path"].search(path):
                    c.counts[i] = c.counts.get(i, 0) + 1
                    if c.counts[i] == f["k"]:
                        if "fn" in f:
                            f["fn"]()
                        else:
                            busy = {"Retry-After": "0"} if f["status"] in (429, 503) \
                                else None
                            self._send(f["status"], {"NeutronError" if "/network" in path
                                                     else "computeFault":
                                                     {"message": f["message"], "code": f["status"],
                                                      "type": "Injected"}}, busy)
                            return
        try:
            self._dispatch(method, path, query)
        except KeyError:
            self._send(404, {"itemNotFound": {"message": f"{path} not found", "code": 404}})

    def _dispatch(self, method: str, path: str, q: dict[str, list[str]]) -> None:
        b, c = self.base, self.cloud
        # --- Keystone v3
        if path == "/identity/v3/auth/tokens" and method == "POST":
            now = dt.datetime.now(tz=dt.UTC)
            cat = [{"type": t, "name": n, "id": n, "endpoints": [
                {"id": n, "interface": i, "region": "RegionOne", "region_id": "RegionOne",
                 "url": f"{b}{u}"} for i in ("public", "internal")]}
                for t, n, u in (("compute", "nova", "/compute/v2.1"),
                                ("network", "neutron", "/network"),
                                ("image", "glance", "/image"),
                                ("identity", "keystone", "/identity/v3"))]
            token = {"methods": ["password"], "catalog": cat,
                     "expires_at": (now + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                     "issued_at": now.isoformat().replace("+00:00", "Z"),
                     "user": {"id": "u1", "name": "lab", "domain": {"id": "default",
                                                                    "name": "Default"}},
                     "project": {"id": "p1", "name": "lab", "domain": {"id": "default",
                                                                       "name": "Default"}},
                     "roles": [{"id": "r1", "name": "member"}]}
            self._send(201, {"token": token}, {"X-Subject-Token": "tok-" + uuid.uuid4().hex})
            return
        if path in ("/identity/v3", "/identity"):
            self._send(200, {"version": {"id": "v3.14", "status": "stable", "links": [
                {"rel": "self", "href": f"{b}/identity/v3/"}]}})
            return
        # --- version documents
        if path in ("/compute", "/compute/v2.1"):
            v = {"id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1",
                 "links": [{"rel": "self", "href": f"{b}/compute/v2.1/"}]}
            self._send(200, {"version": v} if path.endswith("v2.1") else {"versions": [v]})
            return
        if path in ("/network", "/network/v2.0") and method == "GET":
            self._send(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
                {"rel": "self", "href": f"{b}/network/v2.0/"}]}]})
            return
        if path in ("/image", "/image/v2") and method == "GET":
            self._send(200, {"versions": [{"id": "v2.15", "status": "CURRENT", "links": [
                {"rel": "self", "href": f"{b}/image/v2/"}]}]})
            return
        # --- Glance
        if path == "/image/v2/images":
            self._send(200, {"images": _filter(list(c.images.values()), q)})
            return
        m = re.fullmatch(r"/image/v2/images/([^/]+)", path)
        if m:
            self._send(200, c.images[m.group(1)])
            return
        # --- Neutron
        m = re.fullmatch(r"/network/v2\.0/(networks|subnets|ports|floatingips|security-groups)"
                         r"(?:/([^/]+))?(?:/(tags))?", path)
        if m:
            self._neutron(method, m.group(1), m.group(2), q)
            return
        # --- Nova
        if path.startswith("/compute/v2.1"):
            self._nova(method, path[len("/compute/v2.1"):], q)
            return
        raise KeyError(path)

    def _neutron(self, method: str, kind: str, ident: str | None,
                 q: dict[str, list[str]]) -> None:
        c = self.cloud
        table = {"networks": c.networks, "subnets": c.subnets, "ports": c.ports,
                 "floatingips": c.fips, "security-groups": c.security_groups}[kind]
        one = {"networks": "network", "subnets": "subnet", "ports": "port",
               "floatingips": "floatingip", "security-groups": "security_group"}[kind]
        plural = kind.replace("-", "_")
        if method == "GET" and ident is None:
            self._send(200, {plural: _filter(list(table.values()), q)})
        elif method == "GET":
            self._send(200, {one: table[ident]})
        elif method == "DELETE":
            with c.lock:
                del table[ident]
            self._send(204)
        elif method == "POST" and kind == "ports":
            body = self._body()["port"]
            ip = body["fixed_ips"][0]["ip_address"]
            with c.lock:
                if any(p["fixed_ips"][0]["ip_address"] == ip for p in c.ports.values()):
                    self._send(409, {"NeutronError": {"type": "IpAddressAlreadyAllocated",
                                                      "message": f"IP {ip} in use"}})
                    return
                port = {"id": str(uuid.uuid4()), "status": "DOWN", "device_id": "",
                        "mac_address": "fa:16:3e:00:00:01", "tags": [], **body}
                c.ports[port["id"]] = port
            self._send(201, {"port": port})
        elif method == "POST" and kind == "floatingips":
            body = self._body()["floatingip"]
            with c.lock:
                fip = {"id": str(uuid.uuid4()), "floating_ip_address": next(c.fip_addresses),
                       "status": "ACTIVE", "tags": [], **body}
                c.fips[fip["id"]] = fip
            self._send(201, {"floatingip": fip})
        elif method == "PUT" and ident is not None:
            body = self._body()
            with c.lock:
                table[ident].update(body.get(one, body))
            self._send(200, {one: table[ident]})
        else:
            raise KeyError(kind)

    def _nova(self, method: str, path: str, q: dict[str, list[str]]) -> None:
        c = self.cloud
        if path in ("/flavors", "/flavors/detail"):
            self._send(200, {"flavors": _filter(list(c.flavors.values()), q)})
            return
        m = re.fullmatch(r"/flavors/([^/]+)", path)
        if m:
            self._send(200, {"flavor": c.flavors[m.group(1)]})
            return
        if path == "/servers" and method == "POST":
            body = self._body()["server"]
            sid = str(uuid.uuid4())
            with c.lock:
                port = c.ports[body["networks"][0]["port"]]
                port["device_id"] = sid
                c.servers[sid] = {
                    "id": sid, "name": body["name"], "status": "BUILD", "gets": 0,
                    "tags": body.get("tags", []), "metadata": body.get("metadata", {}),
                    "image": {"id": body.get("imageRef")},
                    "flavor": {"id": body.get("flavorRef")},
                    "user_data": body.get("user_data"),
                    "config_drive": body.get("config_drive"),
                    "addresses": {"fabperf-lab": [
                        {"addr": port["fixed_ips"][0]["ip_address"], "version": 4}]},
                    "links": []}
            self._send(202, {"server": {"id": sid, "links": [], "adminPass": "x"}})
            return
        if path in ("/servers", "/servers/detail") and method == "GET":
            servers = _filter(list(c.servers.values()), q)
            self._send(200, {"servers": [self._public(s) for s in servers]})
            return
        m = re.fullmatch(r"/servers/([^/]+)(/action)?", path)
        if m:
            sid = m.group(1)
            if m.group(2):
                c.servers[sid]
                self._send(200, {"output": f"console of {sid}\nlogin:"})
            elif method == "GET":
                with c.lock:
                    s = c.servers[sid]
                    s["gets"] += 1
                    if s["gets"] > 1 and s["status"] == "BUILD":
                        s["status"] = "ACTIVE"
                self._send(200, {"server": self._public(s)})
            elif method == "DELETE":
                with c.lock:
                    s = c.servers.pop(sid)
                    for p in c.ports.values():
                        if p.get("device_id") == s["id"]:
                            p["device_id"] = ""
                self._send(204)
            return
        raise KeyError(path)

    @staticmethod
    def _public(s: dict[str, Any]) -> dict[str, Any]:
        doc = {k: v for k, v in s.items() if k not in ("gets", "user_data")}
        doc["OS-EXT-SRV-ATTR:user_data"] = s.get("user_data")
        return doc


class OpenStackDouble:
    """The HTTP server in a thread, and a clouds.yaml pointing at it."""

    def __init__(self) -> None:
        self.cloud = Cloud()
        handler = type("H", (Handler,), {"cloud": self.cloud})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        handler.base = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def clouds_yaml(self, path: Path) -> Path:
        path.write_text(json.dumps({"clouds": {"fabperf": {
            "auth": {"auth_url": f"{self.url}/identity/v3", "username": "lab",
                     "password": "secret", "project_name": "lab",
                     "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": "RegionOne", "identity_api_version": 3}}}))
        return path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
