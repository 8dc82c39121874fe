"""The few git questions bisect asks of a Fabric repository, through fabkit.runner."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from fabkit import runner
from fabkit.errors import ExternalError, InputError

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def _git(gitdir: Path, *args: str, what: str) -> str:
    return runner.run(["git", "-C", str(gitdir), *args], what=what).stdout


def check_repo(gitdir: Path) -> None:
    if not gitdir.is_dir():
        raise InputError.field(None, "--source", "a Fabric git repository (a directory)",
                               str(gitdir))
    res = runner.run(["git", "-C", str(gitdir), "rev-parse", "--git-dir"], check=False,
                     what="git rev-parse --git-dir")
    if not res.ok:
        raise InputError.field(None, "--source", "a git repository", str(gitdir),
                               hint=res.stderr.strip()[:200])


def resolve(gitdir: Path, ref: str) -> str:
    """The full commit sha a ref names; InputError when it names none."""
    if not ref or ref.startswith("-"):
        raise InputError.field(None, "REF", "a git ref", ref)
    res = runner.run(["git", "-C", str(gitdir), "rev-parse", "--verify", "--quiet",
                      f"{ref}^{{commit}}"], check=False, what=f"git rev-parse {ref}")
    sha = res.stdout.strip()
    if not res.ok or not SHA_RE.match(sha):
        raise InputError.field(None, "REF", f"a commit of {gitdir}", ref)
    return sha


def first_parent_range(gitdir: Path, good: str, bad: str) -> list[str]:
    """The commits after good up to bad along bad's first-parent line, oldest first
    (`git rev-list --first-parent --reverse good..bad`): merges count as one commit each,
    the branches they bring in are not visited. InputError when good is not an ancestor."""
    res = runner.run(["git", "-C", str(gitdir), "merge-base", "--is-ancestor", good, bad],
                     check=False, what="git merge-base --is-ancestor")
    if res.returncode == 1:
        raise InputError(f"--good {good[:12]} is not an ancestor of --bad {bad[:12]}",
                         hint="bisect looks for the first bad commit after a good one")
    if not res.ok:
        raise ExternalError(f"git merge-base failed: {res.stderr.strip()}")
    out = _git(gitdir, "rev-list", "--first-parent", "--reverse", f"{good}..{bad}",
               what="git rev-list")
    return out.split()


def subject(gitdir: Path, commit: str) -> str:
    return _git(gitdir, "log", "-1", "--format=%s", commit, what="git log").strip()


def archive(gitdir: Path, commit: str, dest: Path) -> Path:
    """`git archive` of a commit as a tar.gz (it carries the commit id in its header)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file():
        tmp = dest.with_name(dest.name + ".partial")
        runner.run(["git", "-C", str(gitdir), "archive", "--format=tar.gz",
                    f"--prefix=fabric-{commit[:12]}/", "-o", str(tmp), commit],
                   what=f"git archive {commit[:12]}")
        tmp.replace(dest)
    return dest


def clone(url: str, dest: Path) -> Path:
    """A bare clone of url (kept: the next bisect reuses it)."""
    if not (dest / "HEAD").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        runner.run(["git", "clone", "--bare", "--quiet", url, str(dest)],
                   what=f"git clone {url}", timeout=1800)
    return dest


def check_offline(gitdir: Path, commits: Sequence[str]) -> None:
    """What every bake of the bisect will take from the repository, checked before the first
    one: each commit is there (a shallow or partial clone may lack some) with its go.mod (the
    Go version its bake asks for). InputError listing every missing object."""
    asks = [f"{c}^{{commit}}" for c in commits] + [f"{c}:go.mod" for c in commits]
    res = runner.run(["git", "-C", str(gitdir), "cat-file", "--batch-check"],
                     input="\n".join(asks) + "\n", what="git cat-file --batch-check")
    missing = [line.split()[0] for line in res.stdout.splitlines() if line.endswith(" missing")]
    commits_missing = [m[:12] for m in missing if m.endswith("^{commit}")]
    gomod_missing = [m[:12] for m in missing if m.endswith(":go.mod")]
    if commits_missing:
        raise InputError(f"{gitdir}: {len(commits_missing)} commit(s) a bisect bake needs are "
                         f"not in the repository: {', '.join(commits_missing[:8])}"
                         + (" ..." if len(commits_missing) > 8 else ""),
                         hint="fetch the full history (git fetch --unshallow) before bisecting")
    if gomod_missing:
        raise InputError(f"{gitdir}: {len(gomod_missing)} commit(s) have no go.mod, where the "
                         f"bake reads the Go version to build with: "
                         f"{', '.join(gomod_missing[:8])}"
                         + (" ..." if len(gomod_missing) > 8 else ""),
                         hint="is --source a Fabric repository? give a --good at or after "
                              "the first commit with go.mod")
