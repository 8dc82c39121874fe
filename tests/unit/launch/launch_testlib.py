"""Shared helpers of the launch unit tests (imported by the test modules beside it)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from launch.render import bundle, cloudinit
from launch.spec import env as spec

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "environments"
GOLDEN = REPO / "tests" / "golden" / "launch"
NONCE = "0123456789abcdef0123456789abcdef"

_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\n[A-Za-z0-9+/=\s]+?-----END \1-----\n?")


def example(name: str) -> dict[str, Any]:
    """An example environment as a raw dict (to be mutated by a test)."""
    return copy.deepcopy(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()))


def write_spec(tmp: Path, doc: dict[str, Any], name: str = "env.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def render(name_or_doc: str | dict[str, Any], out: Path, **kwargs: Any) -> bundle.Bundle:
    """Render an example (by name) or a raw spec dict into `out` with a fixed nonce."""
    if isinstance(name_or_doc, str):
        env = spec.load(EXAMPLES / f"{name_or_doc}.yaml")
    else:
        env = spec.parse(name_or_doc, Path("test.yaml"))
    kwargs.setdefault("nonce", NONCE)
    kwargs.setdefault("manifest_root", out.parent)
    return bundle.render(env, out, **kwargs)


def cloud_config(data: bytes) -> dict[str, Any]:
    """The cloud-config document of user-data bytes (gzip inflated), header checked."""
    text = cloudinit.decode(data)
    assert text.startswith(b"#cloud-config\n")
    return yaml.safe_load(text)


def files_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in doc["write_files"]}


def scrub(value: Any) -> Any:
    """Replace PEM blocks, the nonce and generated secrets with placeholders, recursively."""
    if isinstance(value, str):
        value = _PEM.sub(lambda m: f"<PEM {m.group(1)}>\n", value)
        value = re.sub(r"(GF_SECURITY_ADMIN_PASSWORD=).+", r"\1<password>", value)
        return value.replace(NONCE, "<nonce>")
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
