"""A fake launch.compare.lab.Lab: records every call; bench publishes recorded bundles."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from fabkit.errors import ExternalError
from launch.bench import results
from launch.compare.lab import Bench, Image, Variant

DATA = Path(__file__).resolve().parents[2] / "data/compare"


def recorded(group: str) -> list[Path]:
    return sorted(p.parent for p in (DATA / group).rglob("summary.json")
                  if results.load(p.parent).status == "complete")


class FakeLab:
    environment = "local"

    def __init__(self, sources: dict[str, str] | None = None,
                 fail: Callable[[str, tuple], BaseException | None] = lambda *_: None,
                 calibration: Callable[[int], dict] | None = None) -> None:
        # variant label -> recorded group whose bundles its benches return (in turn)
        self.sources = sources or {}
        self.fail = fail
        self.calls: list[tuple] = []
        self.current: str | None = None
        self.served: dict[str, int] = {}
        self.baked: set[str] = set()

    def _maybe_fail(self, what: str, *args) -> None:
        exc = self.fail(what, args)
        if exc is not None:
            raise exc

    def fingerprint(self, v: Variant) -> str:
        return f"fp-{v.ref}"

    def has_artifact(self, image: Image) -> bool:
        return True

    def bake(self, v: Variant) -> Image:
        self.calls.append(("bake", v.label))
        self._maybe_fail("bake", v.label)
        action = "skipped" if v.label in self.baked else "built"
        self.baked.add(v.label)
        return Image(v.label, f"fabperf-fabric-node-{v.ref}", f"fp-{v.ref}",
                     f"/images/{v.ref}.qcow2", action)

    def launch(self, v: Variant, image: Image) -> None:
        self.calls.append(("launch", v.label, image.name))
        self._maybe_fail("launch", v.label)
        self.current = v.label

    def bench(self, results_root: Path, rounds: Sequence[str] = (), tps: int | None = None,
              duration: int | None = None, workers_per_vm: int | None = None) -> Bench:
        self.calls.append(("bench", self.current, tuple(rounds)))
        self._maybe_fail("bench", self.current)
        group = self.sources[self.current]
        n = self.served.get(self.current, 0)
        self.served[self.current] = n + 1
        src = recorded(group)[n % len(recorded(group))]
        k = n
        while (dest := results_root / "local" / f"{src.name[:-3]}{k:02d}Z").exists():
            k += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest)
        return Bench(dest, results.load(dest))


def external(message: str) -> ExternalError:
    return ExternalError(message)
