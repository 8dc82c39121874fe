"""A second runner for goss YAML specs, through pytest-testinfra (agentless).

goss stays the default wherever its binary exists; this runner makes the same specs execute
where goss cannot be had (it is not in Debian, PyPI or npm, and its releases are not reachable
from the build machines). It supports the goss resource types and attributes fabperf's specs
use, with goss semantics, and refuses anything else: an unknown type or attribute is an
InputError, never a silent pass.

Hosts: ``ssh://USER@HOST:PORT`` (with an identity file), ``local://`` and ``chroot:///ROOT``.
All commands go through fabkit.runner (logged), via testinfra backends whose ``run_local`` is
routed there. In a chroot the network namespace, /proc and the init system are the host's,
so ``port``, ``process``, ``kernel-param`` and ``service.running`` checks are reported as
skipped there (with that reason) rather than answered about the wrong machine.

Templating: the goss subset ``{{.Vars.X}}``, ``{{if .Vars.X}}``, ``{{if eq|ne .Vars.X "v"}}``,
``{{if not .Vars.X}}``, ``{{else}}``, ``{{end}}``; anything else in ``{{ }}`` is an error.

    python -m bake.goss validate --host ssh://USER@HOST:PORT --ssh-key KEY --spec FILE...
                                 [--vars-json JSON] --junit OUT.xml
"""

from __future__ import annotations

import atexit
import json
import re
import shlex
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from fabkit import inputs, runner
from fabkit.errors import ExternalError, InputError

# type -> attributes this runner understands (goss names).
SUPPORTED: dict[str, frozenset[str]] = {
    "file": frozenset({"exists", "mode", "owner", "group", "filetype", "contents", "contains",
                       "linked-to", "skip"}),
    "package": frozenset({"installed", "versions", "skip"}),
    "service": frozenset({"enabled", "running", "skip"}),
    "user": frozenset({"exists", "uid", "gid", "groups", "home", "shell", "skip"}),
    "group": frozenset({"exists", "gid", "skip"}),
    "command": frozenset({"exec", "exit-status", "stdout", "stderr", "timeout", "skip"}),
    "port": frozenset({"listening", "ip", "skip"}),
    "process": frozenset({"running", "skip"}),
    "kernel-param": frozenset({"value", "skip"}),
}
# What a chroot cannot answer about the image (it shares these with the host).
CHROOT_SKIP = {
    ("port", None): "a chroot shares the host's network namespace",
    ("process", None): "a chroot sees the host's processes",
    ("kernel-param", None): "a chroot reads the host's /proc/sys",
    ("service", "running"): "no init system runs in a chroot",
}


@dataclass(frozen=True)
class Result:
    """One checked attribute of one resource."""

    spec: str
    rtype: str
    name: str
    attribute: str
    ok: bool
    skipped: bool = False
    message: str = ""

    @property
    def title(self) -> str:
        return f"{self.rtype}: {self.name}: {self.attribute}"


@dataclass(frozen=True)
class Check:
    """One resource of a spec: its type, key and the attributes to verify."""

    spec: str
    rtype: str
    name: str
    attrs: Mapping[str, Any] = field(default_factory=dict)


# --- templating ------------------------------------------------------------------------

_TOKEN = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_VAR = r"\.Vars\.([A-Za-z_][A-Za-z0-9_]*)"


class _Missing(jinja2.Undefined):
    """A missing var is an error wherever it is used, as in real goss (its templates run with
    missingkey=error); `index .Vars "X"` is the way to test for an optional one."""

    def __str__(self) -> str:
        raise jinja2.UndefinedError(
            f'map has no entry for key "{self._undefined_name}" (.Vars.{self._undefined_name}; '
            f'use `index .Vars "{self._undefined_name}"` for an optional variable)')

    def __bool__(self) -> bool:
        self.__str__()
        return False


def _translate(text: str, source: str) -> str:
    """The goss template subset, as a Jinja2 template (raw text outside tags is escaped)."""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        raw = text[pos:m.start()]
        out.append("{% raw %}" + raw + "{% endraw %}" if ("{%" in raw or "{#" in raw) else raw)
        pos = m.end()
        expr = m.group(1)
        if mm := re.fullmatch(_VAR, expr):
            out.append("{{ Vars." + mm.group(1) + " }}")
        elif mm := re.fullmatch(r"if\s+" + _VAR, expr):
            out.append("{% if Vars." + mm.group(1) + " %}")
        elif mm := re.fullmatch(r'if\s+index\s+\.Vars\s+"([A-Za-z_][A-Za-z0-9_]*)"', expr):
            out.append("{% if Vars.get(" + json.dumps(mm.group(1)) + ") %}")
        elif mm := re.fullmatch(r"if\s+not\s+" + _VAR, expr):
            out.append("{% if not Vars." + mm.group(1) + " %}")
        elif mm := re.fullmatch(r'if\s+(eq|ne)\s+' + _VAR + r'\s+"([^"]*)"', expr):
            op = "==" if mm.group(1) == "eq" else "!="
            out.append("{% if Vars." + mm.group(2) + f" {op} {json.dumps(mm.group(3))}" + " %}")
        elif expr == "else":
            out.append("{% else %}")
        elif expr == "end":
            out.append("{% endif %}")
        else:
            raise InputError.field(
                source, "template",
                "a goss template action this runner supports (.Vars.X, if/eq/ne/not, "
                'if index .Vars "X", else, end)',
                "{{" + expr + "}}")
    out.append(text[pos:])
    return "".join(out)


def render(text: str, variables: Mapping[str, Any], source: str = "<spec>") -> str:
    """Render a goss spec's template subset with ``variables`` (goss --vars)."""
    env = jinja2.Environment(undefined=_Missing, keep_trailing_newline=True, autoescape=False)
    try:
        return env.from_string(_translate(text, source)).render(Vars=dict(variables))
    except jinja2.TemplateError as exc:
        raise InputError(f"{source}: template: {exc}") from exc


# --- loading ---------------------------------------------------------------------------

def load_spec(path: Path, variables: Mapping[str, Any] | None = None) -> list[Check]:
    """Parse one goss spec into checks, refusing unknown types and attributes."""
    text = inputs.read_text(path, what="goss spec")
    doc = inputs.load_yaml(render(text, variables or {}, str(path)), source=path) or {}
    if not isinstance(doc, dict):
        raise InputError.field(path, "(top level)", "a mapping of goss resource types", doc)
    checks: list[Check] = []
    for rtype, resources in doc.items():
        if rtype not in SUPPORTED:
            raise InputError.field(path, rtype, "a goss resource type this runner supports: "
                                   + ", ".join(sorted(SUPPORTED)), rtype)
        if not isinstance(resources, dict):
            raise InputError.field(path, rtype, "a mapping of resources", resources)
        for name, attrs in resources.items():
            attrs = attrs or {}
            if not isinstance(attrs, dict):
                raise InputError.field(path, f"{rtype}.{name}", "a mapping of attributes", attrs)
            unknown = sorted(set(attrs) - SUPPORTED[rtype])
            if unknown:
                raise InputError.field(path, f"{rtype}.{name}.{unknown[0]}",
                                       f"one of {sorted(SUPPORTED[rtype])}", unknown[0])
            checks.append(Check(str(path), rtype, str(name), attrs))
    return checks


# --- hosts -----------------------------------------------------------------------------

def _runner_backend(base_cls: type) -> type:
    """A testinfra backend class whose commands run through fabkit.runner (and are logged)."""
    from testinfra.backend import base

    class RunnerBackend(base_cls):
        def run_local(self, command: str, *args: str) -> base.CommandResult:
            cmd = self.quote(command, *args)
            done = runner.run(["/bin/sh", "-c", cmd], check=False, timeout=600)
            return self.result(done.returncode, self.encode(cmd), done.stdout.encode(),
                               done.stderr.encode())

    RunnerBackend.__name__ = f"Runner{base_cls.__name__}"
    return RunnerBackend


@dataclass(frozen=True)
class Target:
    """Where the checks run: the testinfra host and what kind of connection it is."""

    host: Any
    kind: str  # local | ssh | chroot
    where: str


def connect(hostspec: str, ssh_key: str | None = None) -> Target:
    """A testinfra host for ssh://USER@HOST:PORT, local:// or chroot:///ROOT."""
    from testinfra.backend.chroot import ChrootBackend
    from testinfra.backend.local import LocalBackend
    from testinfra.backend.ssh import SshBackend
    from testinfra.host import Host

    if hostspec.startswith("local://"):
        return Target(Host(_runner_backend(LocalBackend)()), "local", "local")
    if hostspec.startswith("chroot://"):
        root = hostspec[len("chroot://"):]
        if not root.startswith("/") or not Path(root).is_dir():
            raise InputError.field(None, "--host", "chroot:///ABSOLUTE/ROOT (an existing dir)",
                                   hostspec)
        return Target(Host(_runner_backend(ChrootBackend)(root)), "chroot", root)
    if hostspec.startswith("ssh://"):
        spec = hostspec[len("ssh://"):]
        user = spec.split("@", 1)[0] if "@" in spec else None
        # Checks read root-only files (keys, /root): a non-root login runs them through sudo,
        # as goss's Packer provisioner does (use_sudo).
        # One multiplexed connection for all checks: testinfra asks for ControlMaster but
        # without a ControlPath ssh ignores it, and a key exchange per check costs seconds
        # against a TCG guest (about 5 minutes for one image's specs).
        control_dir = tempfile.mkdtemp(prefix="fabperf-goss-")
        atexit.register(shutil.rmtree, control_dir, ignore_errors=True)
        backend = _runner_backend(SshBackend)(
            spec, ssh_identity_file=ssh_key, sudo=user not in (None, "root"),
            # %% because testinfra %-formats the ssh command line; ssh sees %C.
            controlpath=f"{control_dir}/%%C", controlpersist=30,
            ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                           "-o BatchMode=yes -o ConnectTimeout=15 -o LogLevel=ERROR",
        )
        return Target(Host(backend), "ssh", spec)
    raise InputError.field(None, "--host", "ssh://USER@HOST:PORT, local:// or chroot:///ROOT",
                           hostspec)


# --- matchers --------------------------------------------------------------------------

def _match_patterns(text: str, patterns: Any, what: str) -> tuple[bool, str]:
    """goss's list matcher for contents/stdout: substrings, /regex/, and !negations."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list):
        raise InputError(f"{what}: expected a list of patterns, found {patterns!r}")
    for pat in patterns:
        pat = str(pat)
        negate = pat.startswith("!")
        body = pat[1:] if negate else pat
        if len(body) >= 2 and body.startswith("/") and body.endswith("/"):
            found = re.search(body[1:-1], text, re.M) is not None
        else:
            found = body in text
        if found == negate:
            return False, f"pattern {pat!r} {'found' if negate else 'not found'}"
    return True, ""


def _cmp(expected: Any, actual: Any) -> tuple[bool, str]:
    ok = expected == actual
    return ok, "" if ok else f"expected {expected!r}, found {actual!r}"


# --- resource checks -------------------------------------------------------------------

Checker = Callable[[Any, Check, str], tuple[bool, str]]


def _file(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    f = host.file(c.name)
    exp = c.attrs[attr]
    if attr == "exists":
        return _cmp(bool(exp), f.exists)
    if not f.exists:
        return False, "file does not exist"
    if attr == "mode":
        return _cmp(str(exp).zfill(4), f"{f.mode:04o}")
    if attr == "owner":
        return _cmp(exp, f.user)
    if attr == "group":
        return _cmp(exp, f.group)
    if attr == "filetype":
        kind = ("symlink" if f.is_symlink else "directory" if f.is_directory
                else "file" if f.is_file else "socket" if f.is_socket else "other")
        return _cmp(exp, kind)
    if attr == "linked-to":
        # goss compares the link's own target (readlink), not the resolved path
        target = host.run("readlink %s", c.name).stdout.strip() if f.is_symlink else None
        return _cmp(exp, target)
    # contents / contains (goss renamed contains to contents in v0.4)
    if f.is_directory:
        return False, "contents of a directory"
    return _match_patterns(f.content_string, exp, f"{c.spec}: file.{c.name}.{attr}")


def _package(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    p = host.package(c.name)
    exp = c.attrs[attr]
    if attr == "installed":
        return _cmp(bool(exp), p.is_installed)
    if not p.is_installed:
        return False, "package not installed"
    if not isinstance(exp, list):
        raise InputError.field(c.spec, f"package.{c.name}.versions", "a list of versions", exp)
    have = p.version
    missing = [v for v in exp if str(v) != have]
    return (not missing), "" if not missing else f"installed {have!r}, expected {exp!r}"


def _service(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    s = host.service(c.name)
    exp = bool(c.attrs[attr])
    return _cmp(exp, s.is_enabled if attr == "enabled" else s.is_running)


def _user(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    u = host.user(c.name)
    exp = c.attrs[attr]
    if attr == "exists":
        return _cmp(bool(exp), u.exists)
    if not u.exists:
        return False, "user does not exist"
    if attr == "groups":
        want, have = sorted(map(str, exp)), sorted(u.groups)
        return _cmp(want, have)
    return _cmp(exp, {"uid": u.uid, "gid": u.gid, "home": u.home, "shell": u.shell}[attr])


def _group(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    g = host.group(c.name)
    exp = c.attrs[attr]
    if attr == "exists":
        return _cmp(bool(exp), g.exists)
    if not g.exists:
        return False, "group does not exist"
    return _cmp(exp, g.gid)


def _command(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    cmd = c.attrs.get("exec", c.name)
    timeout_s = int(c.attrs.get("timeout", 10000)) / 1000.0
    started = time.monotonic()
    out = host.run(f"timeout {timeout_s:g} /bin/sh -c {shlex.quote(cmd)}")
    if out.rc == 124 and time.monotonic() - started >= timeout_s:
        return False, f"timed out after {timeout_s:g}s"
    exp = c.attrs[attr]
    if attr == "exit-status":
        ok, msg = _cmp(int(exp), out.rc)
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return ok, msg + (f" (output: {' | '.join(tail)})" if not ok and tail else "")
    return _match_patterns(out.stdout if attr == "stdout" else out.stderr, exp,
                           f"{c.spec}: command.{c.name}.{attr}")


def _port(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    m = re.fullmatch(r"(tcp|udp)(6?):(\d+)", c.name)
    if not m:
        raise InputError.field(c.spec, f"port.{c.name}", "tcp:PORT / udp:PORT", c.name)
    if attr == "ip":
        return True, "checked with listening"
    flag = "-t" if m.group(1) == "tcp" else "-u"
    out = host.run(f"ss -H -n -l {flag}")
    if out.rc != 0:
        return False, f"ss failed: {out.stderr.strip()}"
    want_ips = {str(i) for i in c.attrs.get("ip") or []}
    bound = []
    for line in out.stdout.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        addr, _, port = cols[3].rpartition(":")
        if port == m.group(3):
            bound.append(addr.strip("[]"))
    if want_ips:
        bound = [a for a in bound if a in want_ips]
    return _cmp(bool(c.attrs[attr]), bool(bound))


def _process(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    running = bool(host.process.filter(comm=c.name))
    return _cmp(bool(c.attrs[attr]), running)


def _kernel_param(host: Any, c: Check, attr: str) -> tuple[bool, str]:
    value = host.run("sysctl -n %s", c.name)
    if value.rc != 0:
        return False, f"sysctl {c.name} failed: {value.stderr.strip()}"
    have = " ".join(value.stdout.split())
    return _cmp(" ".join(str(c.attrs[attr]).split()), have)


CHECKERS: dict[str, Checker] = {
    "file": _file, "package": _package, "service": _service, "user": _user, "group": _group,
    "command": _command, "port": _port, "process": _process, "kernel-param": _kernel_param,
}


def run_checks(target: Target, checks: Sequence[Check]) -> list[Result]:
    """Run every attribute of every check; one Result each (skip: true -> skipped)."""
    results: list[Result] = []
    for c in checks:
        attrs = [a for a in c.attrs if a not in ("skip", "exec", "timeout")]
        for attr in attrs:
            base: dict[str, Any] = dict(spec=c.spec, rtype=c.rtype, name=c.name,
                                        attribute=attr)
            if c.attrs.get("skip"):
                results.append(Result(**base, ok=True, skipped=True, message="skip: true"))
                continue
            reason = CHROOT_SKIP.get((c.rtype, None)) or CHROOT_SKIP.get((c.rtype, attr))
            if target.kind == "chroot" and reason:
                results.append(Result(**base, ok=True, skipped=True, message=reason))
                continue
            try:
                ok, msg = CHECKERS[c.rtype](target.host, c, attr)
            except InputError:
                raise
            except Exception as exc:  # a probe that cannot run is a failed check, said why
                ok, msg = False, f"{type(exc).__name__}: {exc}"
            results.append(Result(**base, ok=ok, message=msg))
    return results


def validate(
    hostspec: str,
    specs: Sequence[Path],
    *,
    variables: Mapping[str, Any] | None = None,
    ssh_key: str | None = None,
) -> list[Result]:
    """Load the specs (all of them first: a bad spec fails before anything runs), then check."""
    checks = [c for s in specs for c in load_spec(Path(s), variables)]
    target = connect(hostspec, ssh_key)
    probe = target.host.run("true")
    if probe.rc != 0:
        raise ExternalError(f"cannot run commands on {hostspec}: {probe.stderr.strip()}")
    return run_checks(target, checks)


def write_junit(results: Sequence[Result], path: Path, name: str = "goss") -> None:
    """JUnit XML, one testcase per checked attribute (what CI systems and bake read)."""
    suite = ET.Element("testsuite", name=name, tests=str(len(results)),
                       failures=str(sum(1 for r in results if not r.ok)),
                       skipped=str(sum(1 for r in results if r.skipped)))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"{Path(r.spec).name}.{r.rtype}",
                             name=f"{r.name}: {r.attribute}")
        if r.skipped:
            ET.SubElement(case, "skipped", message=r.message)
        elif not r.ok:
            ET.SubElement(case, "failure", message=r.message).text = r.message
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)

