"""`launch compare`'s orchestration (launch.compare.ab) over a fake lab: the sequence, the
interleaving, the cache hit, failures, interruption and resume. No subprocess but
matplotlib's font cache (the page)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakelab import FakeLab, external

from fabkit.errors import ExternalError, InputError
from launch.compare import ab, lab

pytestmark = pytest.mark.subprocess   # matplotlib's font cache (fc-list) for the page

A, B = lab.variant("v2.5.12"), lab.variant("v3.0.0")
SOURCES = {"v2.5.12": "v2.5.12", "v3.0.0": "v3.0.0"}


def request(repeats: int = 3, max_repeats: int | None = None,
            rounds: tuple[str, ...] = ()) -> ab.Request:
    return ab.Request((A, B), repeats, rounds, max_repeats or repeats)


def test_variant_follows_the_ref() -> None:
    assert (A.label, A.fabric_version) == ("v2.5.12", "2.5.12")
    v = lab.variant("origin/main", source=Path("/x.tar.gz"))
    assert v.label == "origin_main" and v.fabric_version is None
    assert v.version_sets() == ["fabric-node.FABRIC_REF=origin/main",
                                "fabric-node.FABRIC_SOURCE=/x.tar.gz"]
    with pytest.raises(InputError):
        lab.variant("--force")


def test_derived_spec_pins_the_image_and_the_release() -> None:
    raw = {"name": "local", "images": {"monitor": "/m.qcow2"}, "fabric": {"version": "3.0.0"}}
    doc = lab.derived_spec(raw, A, "/a.qcow2")
    assert doc["images"] == {"monitor": "/m.qcow2", "fabric-node": "/a.qcow2"}
    assert doc["fabric"] == {"version": "2.5.12"} and raw["fabric"]["version"] == "3.0.0"


def test_schedule_interleaves_refs() -> None:
    assert [(r, v.label) for r, v in ab.schedule((A, B), 2)] == \
        [(1, "v2.5.12"), (1, "v3.0.0"), (2, "v2.5.12"), (2, "v3.0.0")]


def test_bakes_first_then_interleaves_launch_and_bench(tmp_path: Path) -> None:
    fake = FakeLab(SOURCES)
    lines: list[str] = []
    result = ab.run(fake, request(), tmp_path / "run", progress=lines.append)
    kinds = [c[:2] for c in fake.calls]
    assert kinds[:2] == [("bake", "v2.5.12"), ("bake", "v3.0.0")]
    assert kinds[2:] == [(k, v) for v in ["v2.5.12", "v3.0.0"] * 3
                         for k in ("launch", "bench")]
    create = result.comparison.round("create")
    assert [g.repeats for g in create.groups] == [3, 3]
    assert create.groups[1].differences["goodput"].answer == "different"
    assert (result.repeats, result.looks) == (3, 1)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["status"] == "complete" and len(state["steps"]) == 6
    assert all(Path(s["bundle"]).is_dir() for s in state["steps"])
    assert (tmp_path / "run" / "index.html").is_file() and result.page.parent == tmp_path / "run"
    assert any("step 1/6: v2.5.12 repeat 1/3" in line for line in lines)
    assert any("built" in line for line in lines)


def test_a_second_run_of_the_same_request_is_a_cache_hit(tmp_path: Path) -> None:
    ab.run(FakeLab(SOURCES), request(), tmp_path / "run")
    again = FakeLab(SOURCES)
    lines: list[str] = []
    result = ab.run(again, request(), tmp_path / "run", progress=lines.append)
    assert again.calls == []                         # nothing baked, launched or measured
    assert sum("cached" in line for line in lines) == 2
    assert [g.repeats for g in result.comparison.round("create").groups] == [3, 3]
    with pytest.raises(InputError, match="another compare"):
        ab.run(again, request(repeats=4), tmp_path / "run")


def test_a_failing_bench_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    count = {"n": 0}

    def fail(what, args):
        if what == "bench":
            count["n"] += 1
            if count["n"] == 2:
                return external("manager exited before the benchmark finished")
        return None

    fake = FakeLab(SOURCES, fail)
    result = ab.run(fake, request(), tmp_path / "run")
    assert len(result.failed_steps) == 1
    assert result.failed_steps[0]["label"] == "v3.0.0" and "manager exited" in \
        result.failed_steps[0]["error"]
    assert [g.repeats for g in result.comparison.round("create").groups] == [3, 2]


def test_a_failing_bake_stops_before_anything_is_measured(tmp_path: Path) -> None:
    fake = FakeLab(SOURCES, lambda what, args: external("packer: build failed")
                   if what == "bake" and args == ("v3.0.0",) else None)
    with pytest.raises(ExternalError, match="packer"):
        ab.run(fake, request(), tmp_path / "run")
    assert [c[0] for c in fake.calls] == ["bake", "bake"]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["status"] == "failed" and state["at"] == "bake v3.0.0"
    assert list(state["images"]) == ["v2.5.12"]


def test_interrupted_run_says_where_and_resumes_without_measuring_twice(tmp_path: Path) -> None:
    count = {"n": 0}

    def interrupt(what, args):
        if what == "launch":
            count["n"] += 1
            if count["n"] == 4:
                return KeyboardInterrupt()
        return None

    with pytest.raises(KeyboardInterrupt):
        ab.run(FakeLab(SOURCES, interrupt), request(), tmp_path / "run")
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["status"] == "interrupted"
    assert state["at"] == "step 4/6: v3.0.0 repeat 2/3"
    assert [(s["label"], s["repeat"]) for s in state["steps"]] == \
        [("v2.5.12", 1), ("v3.0.0", 1), ("v2.5.12", 2)]

    resumed = FakeLab(SOURCES)
    result = ab.run(resumed, request(), tmp_path / "run")
    assert [c[:2] for c in resumed.calls if c[0] == "launch"] == \
        [("launch", "v3.0.0"), ("launch", "v2.5.12"), ("launch", "v3.0.0")]
    assert not any(c[0] == "bake" for c in resumed.calls)       # images recorded
    assert [g.repeats for g in result.comparison.round("create").groups] == [3, 3]


def test_a_launch_failure_stops_the_run(tmp_path: Path) -> None:
    fake = FakeLab(SOURCES, lambda what, args: external("bootstrap failed")
                   if what == "launch" and args == ("v3.0.0",) else None)
    with pytest.raises(ExternalError, match="bootstrap"):
        ab.run(fake, request(), tmp_path / "run")
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["status"] == "failed" and state["at"] == "step 2/6: v3.0.0 repeat 1/3"


def test_bad_requests() -> None:
    with pytest.raises(InputError, match="at least two"):
        ab.Request((A,)).check()
    with pytest.raises(InputError, match="distinct"):
        ab.Request((A, A)).check()
    with pytest.raises(InputError, match="--repeat"):
        ab.Request((A, B), 2).check()
    with pytest.raises(InputError, match="--max-repeat"):
        ab.Request((A, B), 5, (), 4).check()
    with pytest.raises(InputError, match="--min-effect"):
        ab.Request((A, B), 5, (), 20, 0).check()
    assert ab.Request((A, B)).repeats == 5 and ab.Request((A, B)).max_repeats == 20
    assert ab.Request((A, B)).looks == 4


def test_an_answered_comparison_stops_at_the_first_batch(tmp_path: Path) -> None:
    fake = FakeLab(SOURCES)
    lines: list[str] = []
    result = ab.run(fake, request(3, 9, ("create",)), tmp_path / "run",
                    progress=lines.append)
    assert (result.repeats, result.looks) == (3, 1)
    assert sum(c[0] == "bench" for c in fake.calls) == 6
    assert "answered after 3 repeats per ref (look 1 of 3)" in lines
    assert result.comparison.looks == 3            # judged with every look it could take
    assert result.comparison.answer() == "different"


def test_unknown_figures_add_interleaved_batches_up_to_the_cap(tmp_path: Path) -> None:
    # the recorded read round's latencies (0.05-0.06 s, 10 ms steps) stay unknown
    fake = FakeLab(SOURCES)
    lines: list[str] = []
    result = ab.run(fake, request(3, 7), tmp_path / "run", progress=lines.append)
    assert (result.repeats, result.looks) == (7, 3)
    benches = [c[1] for c in fake.calls if c[0] == "bench"]
    assert benches == ["v2.5.12", "v3.0.0"] * 7                # A B A B ... throughout
    # at 3 a side and the level of 3 looks, create's goodput is still unknown too
    assert ("look 1: 4 figure(s) unknown (create v3.0.0 goodput, create v3.0.0 p95, read "
            "v3.0.0 p50, read v3.0.0 p95): 6 repeats per ref") in lines
    assert ("look 2: 2 figure(s) unknown (read v3.0.0 p50, read v3.0.0 p95): 7 repeats "
            "per ref") in lines
    assert any(line.startswith("still unknown at the cap (7 repeats per ref)")
               for line in lines)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["looks"] == 3 and state["repeats_used"] == 7
    assert state["answer"] == "different"


def test_preview_names_images_and_steps() -> None:
    lines = ab.preview(FakeLab(SOURCES), request(3))
    assert lines[0].startswith("v2.5.12: fabperf-fabric-node-fp-v2.5.12")
    assert "fabric.version 2.5.12" in lines[0]
    assert lines[2].startswith("steps: v2.5.12#1 v3.0.0#1 v2.5.12#2 v3.0.0#2 v2.5.12#3")
    lines = ab.preview(FakeLab(SOURCES), ab.Request((A, B)))
    assert "up to 10, 15, 20 per ref" in lines[3] and "split over 4 looks" in lines[4]
    assert "Holm over every figure x round x group compared" in lines[4]
