"""launch.compare.bisect: the judgement rule and the real measure over a fake lab."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakelab import FakeLab, external

from fabkit.errors import InputError
from launch.compare import bisect, git

GOOD = bisect.Measurement((100.0, 101.0, 99.0))


def test_worse_needs_the_threshold_and_the_noise() -> None:
    j = bisect.judge(GOOD, bisect.Measurement((90.0, 91.0, 89.0)), 5)
    assert j.worse and "beyond noise" in j.why and "-10.0%" in j.why
    assert not bisect.judge(GOOD, bisect.Measurement((90.0, 91.0, 89.0)), 15).worse
    noisy = bisect.Measurement((60.0, 140.0, 90.0))     # -10 % median, but all over the place
    j = bisect.judge(GOOD, noisy, 5)
    assert not j.worse and "within noise" in j.why


def test_fewer_repeats_let_the_threshold_decide_and_say_so() -> None:
    j = bisect.judge(GOOD, bisect.Measurement((90.0,)), 5)
    assert j.worse and "threshold alone decides" in j.why


def test_lab_measure_bakes_launches_benches_and_skips_what_does_not_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(git, "archive", lambda gitdir, commit, dest: dest)
    fake = FakeLab({"a" * 12: "v2.5.12"},
                   lambda what, args: external("packer: go build failed\nline 2")
                   if what == "bake" and args == ("b" * 12,) else None)
    measure = bisect.lab_measure(fake, tmp_path, tmp_path / "w", "create", 3)
    m = measure("a" * 40)
    assert isinstance(m, bisect.Measurement)
    assert sorted(m.throughput) == [48.9, 49.1, 49.3] and len(m.bundles) == 3
    assert m.verdicts == ("headroom",) * 3
    assert [c[0] for c in fake.calls] == ["bake", "launch", "bench", "bench", "bench"]
    assert fake.calls[2][2] == ("create",)
    failed = measure("b" * 40)
    assert isinstance(failed, bisect.BuildFailed) and "go build failed / line 2" in failed.reason


def test_a_question_must_end_at_bad(tmp_path: Path) -> None:
    q = bisect.Question("g" * 40, "b" * 40, "create", ())
    with pytest.raises(InputError, match="nothing between"):
        bisect.run(q, lambda c: GOOD, tmp_path)
