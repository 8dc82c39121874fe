"""`launch gc`: find and remove what dead runs left in a cloud, and unused nspawn image trees.

A fabperf resource is garbage when its environment is gone (no state for that environment
and environment id in this build directory) or its TTL passed (tags fabperf:created-at +
fabperf:ttl-hours). Only resources older than ``older_than`` are considered; ``dry_run``
lists them and removes nothing. Each provider with garbage (the clouds; nspawn: its cache of
unpacked images) has `collect`, `remove_garbage` and `located` (where it asks: AWS's region
comes from the spec, else ``regions``, else $AWS_REGION / $AWS_DEFAULT_REGION / the profile,
never a silent default); gc itself never looks at a provider's name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fabkit.errors import FabperfError, InputError
from launch.lifecycle.up import env_dir
from launch.machines.providers.base import (
    PROVIDERS,
    Garbage,
    check_region,
    check_settings,
    env_id,
    provider_class,
)
from launch.machines.state import StateStore
from launch.spec import byof

CLOUDS = ("aws", "openstack")        # the providers `--from ENV.yaml` takes settings of


def collectors() -> tuple[str, ...]:
    """The providers that have garbage to collect (`collect`, `remove_garbage`, `located`):
    the clouds, and nspawn's cache of unpacked images."""
    return tuple(n for n in PROVIDERS if hasattr(provider_class(n), "collect"))

_UNITS = {"m": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}


def parse_duration(text: str) -> float:
    """'90m', '6h', '2d', '1w' or '0' -> hours."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([mhdw]?)", text.strip())
    if not m or (not m.group(2) and float(m.group(1)) != 0):
        raise InputError.field(None, "--older-than", "a duration such as 90m, 6h, 2d, 1w",
                               text)
    return float(m.group(1)) * _UNITS.get(m.group(2), 1.0)


@dataclass(frozen=True)
class GcResult:
    """What gc found, what it removed, and which providers it could not ask."""

    garbage: tuple[Garbage, ...]
    removed: tuple[str, ...]
    skipped: tuple[str, ...]
    dry_run: bool
    asked: tuple[str, ...] = ()        # where each provider looked ("aws eu-west-1")


def gc(build_dir: Path, *, providers: Sequence[str] = (), older_than_hours: float = 0.0,
       dry_run: bool = False, spec_path: Path | None = None,
       regions: Sequence[str] = ()) -> GcResult:
    """Collect garbage of each provider (settings from ``spec_path`` when given; each of
    ``regions`` asked in turn by a provider that has a region setting)."""

    settings: dict[str, object] = {}
    explicit = list(providers)
    for p in explicit:
        if p not in collectors():
            raise InputError.field(None, "--provider", f"one of {list(collectors())}", p)
    if spec_path is not None:
        spec = byof.load_any(spec_path)   # an environment file or a BYOF spec
        settings = check_settings(spec.provider.value, spec.settings, spec.source)
        if spec.provider.value not in CLOUDS:
            # the spec's provider, not an option the user did not give
            raise InputError.field(
                spec.source, "provider", f"a cloud provider gc can ask ({', '.join(CLOUDS)}) "
                "for `launch gc --from`", spec.provider.value,
                hint="gc collects cloud resources; a local environment is removed by "
                     "`launch down`")
        explicit = explicit or [spec.provider.value]
    for r in regions:
        check_region(r)

    def live(environment: str, eid: str) -> bool:
        edir = env_dir(build_dir, environment)
        return StateStore(edir).exists() and env_id(edir) == eid

    found: list[Garbage] = []
    removed: list[str] = []
    skipped: list[str] = []
    asked: list[str] = []
    for name in explicit or collectors():
        cls = provider_class(name)
        regional = any(rule.name == "region" for rule in cls.SETTINGS)
        for region in (regions if regional and regions else [None]):
            where = {**settings, "region": region} if region else settings
            try:
                located = cls.located(where)
                items = cls.collect(where, live, older_than_hours)
            except FabperfError as exc:
                if explicit:
                    raise
                skipped.append(f"{name}: {exc.message}")
                continue
            asked.append(located)
            found += items
            if items and not dry_run:
                removed += cls.remove_garbage(where, items)
    return GcResult(tuple(found), tuple(removed), tuple(skipped), dry_run, tuple(asked))
