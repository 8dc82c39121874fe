"""launch bisect's real driver over a synthetic Fabric history made here with git (through
fabkit.runner): a file decides each commit's "throughput", one commit does not "build", a
side branch is merged (first-parent), and a run is interrupted and resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabkit import runner
from fabkit.errors import InputError
from launch.compare import bisect, git

pytestmark = pytest.mark.integration

# commit index -> (throughput, builds)
HISTORY = [(100, True), (101, True), (99, True), (100, True), (100, False), (100, True),
           (80, True), (81, True), (79, True), (80, True)]


def sh(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x.invalid",
           "GIT_AUTHOR_DATE": "2026-12-01T00:00:00Z", "GIT_COMMITTER_DATE":
           "2026-12-01T00:00:00Z"}
    return runner.run(["git", "-C", str(repo), *args], env=env).stdout.strip()


def make_history(repo: Path, history=HISTORY, merge_at: int | None = 3) -> list[str]:
    """One commit per history entry on main (plus a two-commit side branch merged as entry
    `merge_at`, whose side commits are slow: first-parent must not visit them)."""
    repo.mkdir()
    sh(repo, "init", "-q", "-b", "main")
    shas = []
    for i, (tps, builds) in enumerate(history):
        if i == merge_at:
            sh(repo, "checkout", "-q", "-b", "side")
            for k in range(2):
                (repo / "side.txt").write_text(f"side {k}\n")
                (repo / "throughput").write_text("10\n")
                sh(repo, "add", "-A")
                sh(repo, "commit", "-q", "-m", f"side {k}")
            sh(repo, "checkout", "-q", "main")
            sh(repo, "merge", "-q", "--no-ff", "-X", "ours", "-m", f"merge side ({i})", "side")
        (repo / "throughput").write_text(f"{tps}\n")
        broken = repo / "BROKEN"
        if builds:
            broken.unlink(missing_ok=True)
        else:
            broken.write_text("go: build failed\n")
        sh(repo, "add", "-A")
        sh(repo, "commit", "-q", "--allow-empty", "-m", f"commit {i}: {tps} TPS")
        shas.append(sh(repo, "rev-parse", "HEAD"))
    return shas


class Synthetic:
    """measure(commit): the commit's throughput file, three repeats with a little noise."""

    def __init__(self, repo: Path, stop_after: int | None = None) -> None:
        self.repo, self.stop_after, self.measured = repo, stop_after, []

    def __call__(self, commit: str):
        if self.stop_after is not None and len(self.measured) == self.stop_after:
            raise KeyboardInterrupt
        self.measured.append(commit)
        files = sh(self.repo, "ls-tree", "--name-only", commit).split()
        if "BROKEN" in files:
            return bisect.BuildFailed(sh(self.repo, "show", f"{commit}:BROKEN"))
        tps = float(sh(self.repo, "show", f"{commit}:throughput"))
        return bisect.Measurement((tps * 0.99, tps, tps * 1.01), image=f"img-{commit[:7]}")


def question(repo: Path, good: str, bad: str, **kw) -> bisect.Question:
    git.check_repo(repo)
    g, b = git.resolve(repo, good), git.resolve(repo, bad)
    return bisect.Question(g, b, "create", tuple(git.first_parent_range(repo, g, b)), **kw)


def test_first_parent_range_skips_the_side_branch(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo)
    q = question(repo, shas[0], shas[-1])
    assert len(q.commits) == len(HISTORY) - 1 + 1          # 9 commits + the merge
    subjects = [git.subject(repo, c) for c in q.commits]
    assert not any(s.startswith("side") for s in subjects)
    assert "merge side (3)" in subjects
    with pytest.raises(InputError, match="not an ancestor"):
        git.first_parent_range(repo, shas[-1], shas[0])
    with pytest.raises(InputError, match="REF"):
        git.resolve(repo, "no-such-tag")


def test_bisect_finds_the_regression_and_skips_what_does_not_build(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo)
    m = Synthetic(repo)
    lines: list[str] = []
    out = bisect.run(question(repo, shas[0], shas[-1]), m, tmp_path / "state",
                     progress=lines.append)
    assert out.status == "found" and out.first_bad == shas[6]
    assert out.candidates == (shas[6],)
    assert len(m.measured) == len(set(m.measured)) < len(HISTORY)
    assert out.record[shas[6]]["worse"] and "beyond noise" in out.record[shas[6]]["why"]
    assert not out.record[shas[5]]["worse"]
    # the first middle is the broken commit: skipped with its reason, a neighbour measured
    assert out.record[shas[4]]["kind"] == "skipped"
    assert "go: build failed" in out.record[shas[4]]["reason"]
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["status"] == "found" and state["first_bad"] == shas[6]
    assert state["order"] == m.measured


def test_an_unbuildable_commit_on_the_boundary_makes_the_answer_one_of(tmp_path: Path) -> None:
    history = [(100, True)] * 5 + [(100, False), (80, True)] + [(80, True)] * 3
    repo = tmp_path / "fabric"
    shas = make_history(repo, history, merge_at=None)
    m = Synthetic(repo)
    lines: list[str] = []
    out = bisect.run(question(repo, shas[0], shas[-1]), m, tmp_path / "state",
                     progress=lines.append)
    assert out.first_bad == shas[6] and out.candidates == (shas[5], shas[6])
    assert out.record[shas[5]]["kind"] == "skipped"
    assert "one of" in out.explanation and "not measurable" in out.explanation
    assert any("skipped: go: build failed" in line for line in lines)


def test_interrupted_bisect_resumes_without_measuring_a_commit_twice(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo)
    q = question(repo, shas[0], shas[-1])
    reference = bisect.run(q, Synthetic(repo), tmp_path / "ref")

    first = Synthetic(repo, stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        bisect.run(q, first, tmp_path / "state")
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["status"] == "interrupted" and len(state["order"]) == 3

    second = Synthetic(repo)
    out = bisect.run(question(repo, shas[0], shas[-1]), second, tmp_path / "state")
    assert not set(first.measured) & set(second.measured)
    assert first.measured + second.measured == list(reference.record)
    assert out.first_bad == reference.first_bad == shas[6]
    assert out.measured == tuple(second.measured)

    again = Synthetic(repo)                  # a finished bisect: nothing measured again
    assert bisect.run(q, again, tmp_path / "state").first_bad == shas[6] and not again.measured
    with pytest.raises(InputError, match="another bisect"):
        bisect.run(question(repo, shas[1], shas[-1]), again, tmp_path / "state")


def test_no_regression_when_bad_is_not_worse(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo, [(100, True)] * 4, merge_at=None)
    out = bisect.run(question(repo, shas[0], shas[-1]), Synthetic(repo), tmp_path / "s")
    assert out.status == "no-regression" and out.first_bad is None
    assert "not worse" in out.explanation


def test_the_threshold_decides_with_the_noise(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo)
    # a 20 % drop beyond noise, but a 25 % threshold: no regression
    out = bisect.run(question(repo, shas[0], shas[-1], threshold_pct=25), Synthetic(repo),
                     tmp_path / "s")
    assert out.status == "no-regression"


def test_archive_of_a_commit(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo, [(100, True)] * 2, merge_at=None)
    tar = git.archive(repo, shas[1], tmp_path / "src" / f"{shas[1]}.tar.gz")
    listing = runner.run(["tar", "-tzf", str(tar)]).stdout.split()
    assert f"fabric-{shas[1][:12]}/throughput" in listing


def test_cli_bisect_and_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    from fabkit.clikit import run_main
    from launch.cli import cli
    from launch.compare import lab

    repo = tmp_path / "fabric"
    shas = make_history(repo)
    measured: list[str] = []

    def fake_measure(real, gitdir, work_dir, round_label, repeats, progress):
        syn = Synthetic(gitdir)

        def measure(commit):
            measured.append(commit)
            return syn(commit)
        return measure

    monkeypatch.setattr(bisect, "lab_measure", fake_measure)
    monkeypatch.setattr(lab, "RealLab", lambda *a, **k: object())
    spec = Path(__file__).resolve().parents[2] / "environments" / "local.yaml"
    argv = ["bisect", str(spec), "--good", shas[0], "--bad", "main", "--round", "create",
            "--source", str(repo), "--build-dir", str(tmp_path / "build")]
    assert run_main(cli, argv) == 0
    out = capsys.readouterr().out
    assert f"first bad commit: {shas[6][:12]}" in out and "skipped: go: build failed" in out
    assert (tmp_path / "build/bisect/local/state.json").is_file()
    n = len(measured)
    assert run_main(cli, [*argv, "--output", "json"]) == 0
    assert len(measured) == n                               # resumed: nothing measured again
    assert json.loads(capsys.readouterr().out)["first_bad"] == shas[6]
    assert run_main(cli, [*argv[:-2], "--round", "nope"]) == 2
    assert run_main(cli, ["bisect", str(spec), "--good", "nope", "--bad", "main", "--round",
                          "create", "--source", str(repo), "--build-dir",
                          str(tmp_path / "b2")]) == 2
