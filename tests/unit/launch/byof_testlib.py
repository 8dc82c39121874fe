"""A "user's network" for the BYOF tests: a real cryptogen-layout tree of two organisations
(rendered by launch once, as an operator's own tooling would have made it), the files a
user exports from it, and a BYOF spec naming them."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from launch_testlib import EXAMPLES, render

ORGS = ("org1", "org2")


def user_network(tmp: Path) -> Path:
    """crypto/ of environments/multiorg.yaml (Org1MSP, Org2MSP, one peer and User1 each)."""
    bundle = render("multiorg", tmp / "their-network")
    return bundle.out / "crypto" / "peerOrganizations"


def export(crypto: Path, into: Path) -> Path:
    """What a user copies out of their network: per organisation the MSP CA, the peer's TLS
    CA, User1's certificate and key; plus the peer's TLS server pair for a test server."""
    for org in ORGS:
        src = crypto / f"{org}.example.com"
        d = into / org
        d.mkdir(parents=True)
        shutil.copy(src / "ca" / f"ca.{org}.example.com-cert.pem", d / "ca.crt")
        shutil.copy(src / "tlsca" / f"tlsca.{org}.example.com-cert.pem", d / "tlsca.crt")
        user = src / "users" / f"User1@{org}.example.com" / "msp"
        shutil.copy(user / "signcerts" / f"User1@{org}.example.com-cert.pem", d / "user1.crt")
        shutil.copy(user / "keystore" / "priv_sk", d / "user1.key")
        tls = src / "peers" / f"peer0.{org}.example.com" / "tls"
        shutil.copy(tls / "server.crt", d / "server.crt")
        shutil.copy(tls / "server.key", d / "server.key")
        (d / "user1.key").chmod(0o600)
    return into


def spec_doc(files: Path, **changes: Any) -> dict[str, Any]:
    """A BYOF spec over the exported files: two gateways (Org1 by name through an alias,
    Org2 by address with a TLS server-name override), an http operations endpoint."""
    doc = yaml.safe_load((EXAMPLES / "byof.yaml").read_text())
    f = doc["fabric"]
    for i, org in enumerate(ORGS):
        f["msps"][i]["ca_cert"] = str(files / org / "ca.crt")
        f["msps"][i]["identities"] = [{"name": "User1", "cert": str(files / org / "user1.crt"),
                                       "key": str(files / org / "user1.key")}]
        f["gateways"][i]["tls_ca"] = str(files / org / "tlsca.crt")
    f["operations"] = [{"url": "http://peer0.org1.example.com:9443/metrics"}]
    doc.update(changes)
    return doc


def write(tmp: Path, doc: dict[str, Any], name: str = "byof.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextmanager
def tls_server(cert: Path, key: Path, *, speak: bool = True) -> Iterator[int]:
    """A TLS server on 127.0.0.1 (an ephemeral port) presenting cert; `speak` False: it
    accepts TCP connections and never answers (a handshake that would hang)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["h2"])
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            if not speak:
                held.append(conn)
                continue
            try:
                conn.settimeout(5)
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        srv.close()
        for c in held:
            c.close()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
