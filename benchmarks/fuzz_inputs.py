"""Fuzz the input boundary: mutated environment specs and image.yaml files for N seconds.

    .venv/bin/python benchmarks/fuzz_inputs.py [--seconds N] [--seed S]

Each input is a mutation of a real file of the repository, either of its parsed document
(a value replaced by a random or hostile one, a key deleted, renamed or duplicated) or of
its text and bytes (bytes flipped, a line duplicated, an alias bomb, deep nesting,
non-UTF-8). Specs go through launch.spec.env.load + launch.render.plan.build, image.yaml through
bake.catalog.load_image (in a scratch copy of images/ and packer/). The run prints how many
inputs it tried, how many were accepted and how many raised InputError; any other
exception is printed with its input and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import copy
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bake import catalog  # noqa: E402
from fabkit.errors import InputError  # noqa: E402
from launch.render import plan  # noqa: E402
from launch.spec import env as spec  # noqa: E402

HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1, 2, 63, 64, 65, 10**9, 2**63, -2**63, 1.5, float("inf"),
    "", " ", "\n", "x\n", "Org1MSP\n", "mychannel\n", "a" * 5000, "\x00", "\u202e", "é",
    "10.77.0.0", "10.77.0.1", "10.77.0.255", "0.0.0.0/0", "10.0.0.0/8", "999.1.1.1",
    "BFT", "etcdraft", "none", "qemu", "peer", "monitor", "fabric-node", "../etc/passwd",
    "/abs", "AND('Org1MSP.peer'", "OutOf(9, 'Org1MSP.peer')", "1 MB", "0 KB", "2s", "-1s",
    [], [None], [{}], {}, {"a": 1}, {"name": "x"}, [[[[[]]]]],
]


def _walk(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _walk(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _walk(v, (*prefix, i))
    return out


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if r < 0.6 or depth > 2:
        return copy.deepcopy(rng.choice(HOSTILE))  # (the lists in it are mutated later)
    if r < 0.8:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["name", "peers", "x", "count", "type", ""]): _random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def mutate_doc(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        path = rng.choice(_walk(doc))
        if not path:
            if rng.random() < 0.05:
                doc = _random_value(rng)
            continue
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            op = rng.random()
            if op < 0.15 and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif op < 0.25 and isinstance(parent, dict):
                parent[str(path[-1]) + rng.choice(["s", "_", "x"])] = parent.pop(path[-1])
            elif op < 0.35 and isinstance(parent, list):
                parent.append(copy.deepcopy(parent[path[-1]]))
            else:
                parent[path[-1]] = _random_value(rng)
        except (KeyError, IndexError, TypeError):
            pass
    return doc


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nname: *a{levels - 1}\n"


def mutate_bytes(text: str, rng: random.Random) -> bytes:
    data = bytearray(text.encode())
    op = rng.random()
    if op < 0.3 and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op < 0.45:
        lines = text.splitlines(keepends=True)
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])  # a duplicate key, mostly
        data = bytearray("".join(lines).encode())
    elif op < 0.55:
        data += ("\n" + _bomb(rng.randint(3, 10))).encode()
    elif op < 0.65:
        depth = rng.choice([10, 63, 64, 65, 200, 5000])
        data += b"\ndeep: " + b"[" * depth + b"]" * depth + b"\n"
    elif op < 0.75:
        data = data.replace(b"e", b"\xe9", rng.randint(1, 5))
    elif op < 0.85 and data:
        cut = rng.randrange(len(data))
        data = data[:cut]
    else:
        data += rng.randbytes(rng.randint(1, 64))
    return bytes(data)


def _dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return "{}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)

    specs = {p.name: p.read_text() for p in sorted((REPO / "environments").glob("*.yaml"))}
    with tempfile.TemporaryDirectory(prefix="fuzz-inputs-") as tmp:
        root = Path(tmp) / "repo"
        for sub in ("images", "packer", "dashboards"):
            shutil.copytree(REPO / sub, root / sub)
        images = {n: (root / "images" / n / "image.yaml").read_text()
                  for n in catalog.image_names(root)}
        spec_path = Path(tmp) / "env.yaml"
        counts: Counter[str] = Counter()
        failures = 0
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            kind = rng.choice(["spec", "spec", "spec-bytes", "image", "image-bytes"])
            if kind.startswith("spec"):
                text = rng.choice(list(specs.values()))
                data = mutate_bytes(text, rng) if kind.endswith("bytes") else \
                    _dump(mutate_doc(yaml.safe_load(text), rng)).encode()
                path = spec_path
            else:
                name = rng.choice(sorted(images))
                text = images[name]
                data = mutate_bytes(text, rng) if kind.endswith("bytes") else \
                    _dump(mutate_doc(yaml.safe_load(text), rng)).encode()
                path = root / "images" / name / "image.yaml"
            path.write_bytes(data)
            try:
                if kind.startswith("spec"):
                    plan.build(spec.load(path))
                else:
                    catalog.load_image(root, name)
                counts[f"{kind}: accepted"] += 1
            except InputError:
                counts[f"{kind}: InputError"] += 1
            except Exception:  # what the fuzzer is looking for
                failures += 1
                counts[f"{kind}: OTHER"] += 1
                print(f"--- non-InputError on a {kind} input:\n{data[:2000]!r}\n"
                      f"{traceback.format_exc()[-3000:]}", file=sys.stderr)
            finally:
                if kind.startswith("image"):
                    path.write_text(images[name])
        tried = sum(counts.values())
        print(f"seed {seed}: {tried} inputs in {args.seconds:.0f} s")
        for key in sorted(counts):
            print(f"  {key:<28} {counts[key]}")
        print("only InputError came out" if not failures
              else f"{failures} inputs raised something other than InputError")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
