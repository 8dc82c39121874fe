"""The CCaaS chaincode package, byte-for-byte deterministic, so its package ID is known when
the environment is rendered: the chaincode servers on every peer host start with it from
boot, and the bootstrap job installs exactly these bytes (the peer computes the same ID).

A package is Fabric's lifecycle format: a gzipped tar of ``metadata.json`` ({"type": "ccaas",
"label"}) and ``code.tar.gz`` (a gzipped tar of ``connection.json``, what the CCaaS builder
hands the peer). Fabric's package ID is ``<label>:<hex sha256 of the package bytes>``.
Every tar header is fixed (mtime 0, uid/gid 0, no user names, mode 0644) and gzip carries
no name or time, so the same inputs give the same bytes on every machine.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Package:
    """One rendered chaincode package."""

    label: str
    data: bytes

    @property
    def package_id(self) -> str:
        """What `peer lifecycle chaincode install` prints and the chaincode server runs as."""
        return f"{self.label}:{hashlib.sha256(self.data).hexdigest()}"


def _tar_gz(files: Mapping[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _json(doc: Mapping[str, object]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def connection(port: int) -> dict[str, object]:
    """connection.json: each peer dials the chaincode server beside it on its own host."""
    return {"address": f"127.0.0.1:{port}", "dial_timeout": "10s", "tls_required": False}


@functools.lru_cache(maxsize=256)
def package(label: str, port: int) -> Package:
    """The CCaaS package of a chaincode whose servers listen on ``port`` (a pure function,
    cached: every peer host's chaincode env names the package ID)."""
    code = _tar_gz({"connection.json": _json(connection(port))})
    meta = _json({"type": "ccaas", "label": label})
    return Package(label, _tar_gz({"code.tar.gz": code, "metadata.json": meta}))


def server_address(port: int) -> str:
    """CHAINCODE_SERVER_ADDRESS: loopback only, the port of its connection.json."""
    return f"127.0.0.1:{port}"
