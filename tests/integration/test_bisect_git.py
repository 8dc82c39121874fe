"""launch bisect's real driver over a synthetic Fabric history made here with git (through
fabkit.runner): a file decides each commit's "throughput", one commit does not "build", a
side branch is merged (first-parent), and a run is interrupted and resumed."""

from __future__ import annotations

import json
import random
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
    (repo / "go.mod").write_text("module github.com/hyperledger/fabric\n\ngo 1.23.1\n")
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
    """The Measure of a synthetic history: a commit "compiles" unless it has a BROKEN file,
    and each run of it measures its throughput file with 1 % seeded noise."""

    def __init__(self, repo: Path, stop_after: int | None = None, seed: int = 1) -> None:
        self.repo, self.stop_after = repo, stop_after
        self.rng = random.Random(seed)
        self.runs: list[str] = []
        self.checked: list[tuple[str, ...]] = []

    def check(self, commits) -> None:
        git.check_offline(self.repo, commits)
        self.checked.append(tuple(commits))

    def build(self, commit: str):
        files = sh(self.repo, "ls-tree", "--name-only", commit).split()
        if "BROKEN" in files:
            return bisect.BuildFailed(sh(self.repo, "show", f"{commit}:BROKEN"))
        return bisect.Built(f"img-{commit[:7]}")

    def once(self, commit: str, built) -> bisect.Sample:
        if self.stop_after is not None and len(self.runs) == self.stop_after:
            raise KeyboardInterrupt
        self.runs.append(commit)
        tps = float(sh(self.repo, "show", f"{commit}:throughput"))
        return bisect.Sample(tps * (1 + 0.01 * self.rng.gauss(0, 1)), "headroom",
                             f"bundle-{len(self.runs)}")


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
    q = question(repo, shas[0], shas[-1])
    out = bisect.run(q, m, tmp_path / "state", progress=lines.append)
    assert out.status == "found" and out.first_bad == shas[6]
    assert out.candidates == (shas[6],)
    assert m.checked == [(shas[0], *q.commits)]               # before any build
    assert out.record[shas[6]]["worse"] and out.record[shas[6]]["answer"] == "different"
    assert "goodput -20." in out.record[shas[6]]["why"]
    assert not out.record[shas[5]]["worse"] and out.record[shas[5]]["answer"] == "same"
    # good was measured again at every step, interleaved with the candidate
    for c in out.measured:
        rec = out.record[c]
        if rec["kind"] == "measured":
            assert len(rec["good"]) == len(rec["candidate"]) == 5
    # the first middle is the broken commit: skipped with its reason, a neighbour measured
    assert out.record[shas[4]]["kind"] == "skipped"
    assert "go: build failed" in out.record[shas[4]]["reason"]
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["status"] == "found" and state["first_bad"] == shas[6]
    assert state["order"] == list(out.measured)


def test_an_unbuildable_commit_on_the_boundary_makes_the_answer_one_of(tmp_path: Path) -> None:
    history = [(100, True)] * 5 + [(100, False), (80, True)] + [(80, True)] * 3
    repo = tmp_path / "fabric"
    shas = make_history(repo, history, merge_at=None)
    lines: list[str] = []
    out = bisect.run(question(repo, shas[0], shas[-1]), Synthetic(repo), tmp_path / "state",
                     progress=lines.append)
    assert out.first_bad == shas[6] and out.candidates == (shas[5], shas[6])
    assert out.record[shas[5]]["kind"] == "skipped"
    assert "one of" in out.explanation and "compile step failed" in out.explanation
    assert any("skipped: its compile step failed: go: build failed" in line for line in lines)


def test_interrupted_bisect_resumes_without_running_anything_twice(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo)
    q = question(repo, shas[0], shas[-1])
    reference = bisect.run(q, Synthetic(repo), tmp_path / "ref")

    first = Synthetic(repo, stop_after=13)
    with pytest.raises(KeyboardInterrupt):
        bisect.run(q, first, tmp_path / "state")
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["status"] == "interrupted"
    kept = sum(len(r.get("good", [])) + len(r.get("candidate", []))
               for r in state["record"].values())
    assert kept == 13

    second = Synthetic(repo)
    second.rng = random.Random(1)
    for _ in range(13):                 # the same noise stream as the reference from here
        second.rng.gauss(0, 1)
    out = bisect.run(question(repo, shas[0], shas[-1]), second, tmp_path / "state")
    assert len(first.runs) + len(second.runs) == reference.runs
    assert out.first_bad == reference.first_bad == shas[6]
    assert out.runs == len(second.runs)

    again = Synthetic(repo)                  # a finished bisect: nothing run again
    assert bisect.run(q, again, tmp_path / "state").first_bad == shas[6] and not again.runs
    with pytest.raises(InputError, match="another bisect"):
        bisect.run(question(repo, shas[1], shas[-1]), again, tmp_path / "state")


def test_no_regression_when_bad_is_not_worse(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo, [(100, True)] * 4, merge_at=None)
    out = bisect.run(question(repo, shas[0], shas[-1]), Synthetic(repo), tmp_path / "s")
    assert out.status == "no-regression" and out.first_bad is None
    assert "not worse" in out.explanation and ": same (minimum effect 3 %)" in out.explanation


def test_the_minimum_effect_decides(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo)
    # a 20 % drop, clearly measured, under a 30 % minimum effect: no regression (a ratio
    # floor: 25 % would be exactly -20 %, 1/1.25)
    out = bisect.run(question(repo, shas[0], shas[-1], min_effect_pct=30), Synthetic(repo),
                     tmp_path / "s")
    assert out.status == "no-regression"


def test_the_offline_check_names_what_a_shallow_clone_lacks(tmp_path: Path) -> None:
    repo = tmp_path / "fabric"
    shas = make_history(repo, [(100, True)] * 5, merge_at=None)
    git.check_offline(repo, shas)
    shallow = tmp_path / "shallow"
    runner.run(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow)])
    with pytest.raises(InputError) as e:
        git.check_offline(shallow, shas)
    msg = str(e.value)
    assert "4 commit(s) a bisect bake needs are not in the repository" in msg
    assert shas[0][:12] in msg and "git fetch --unshallow" in e.value.hint
    (repo / "go.mod").unlink()
    sh(repo, "commit", "-q", "-am", "no go.mod")
    head = sh(repo, "rev-parse", "HEAD")
    with pytest.raises(InputError, match=f"have no go.mod.*{head[:12]}"):
        git.check_offline(repo, [*shas, head])


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
    made: list[Synthetic] = []

    def fake_measure(real, gitdir, work_dir, round_label, progress):
        made.append(Synthetic(gitdir))
        return made[-1]

    monkeypatch.setattr(bisect, "LabMeasure", fake_measure)
    monkeypatch.setattr(lab, "RealLab", lambda *a, **k: object())
    spec = Path(__file__).resolve().parents[2] / "environments" / "local.yaml"
    argv = ["bisect", str(spec), "--good", shas[0], "--bad", "main", "--round", "create",
            "--source", str(repo), "--build-dir", str(tmp_path / "build")]
    assert run_main(cli, argv) == 0
    out = capsys.readouterr().out
    assert f"first bad commit: {shas[6][:12]}" in out
    assert "skipped (compile failed): go: build failed" in out
    assert (tmp_path / "build/bisect/local/state.json").is_file()
    assert run_main(cli, [*argv, "--output", "json"]) == 0
    assert not made[-1].runs                                 # resumed: nothing run again
    doc = json.loads(capsys.readouterr().out)
    assert doc["first_bad"] == shas[6] and doc["runs_now"] == 0
    assert run_main(cli, [*argv[:-2], "--round", "nope"]) == 2
    assert run_main(cli, ["bisect", str(spec), "--good", "nope", "--bad", "main", "--round",
                          "create", "--source", str(repo), "--build-dir",
                          str(tmp_path / "b2")]) == 2
    assert run_main(cli, [*argv, "--repeat", "9", "--max-repeat", "5"]) == 2
