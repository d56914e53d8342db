"""Keep the shipped weights from travelling to a lent GPU machine (issue 36; docs/gpu_plan.md).

The device tool sends the session checkout's tracked and untracked-not-ignored files, 64 MiB at most, and
weights/ alone is over that, though the call needs none of it (`pack` copied what the stage starts from). `stow`
takes the folders out of git's index (their files stay on disk, unchanged) and ignores them in .git/info/exclude,
so by the tool's own rule they neither count nor travel; `unstow` puts both back. While they are stowed a
pre-commit hook refuses every commit, since one would delete the shipped weights from the repository.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.gpu_plan import ROOT
from ldm.errors import LdmError

STOWED = ("weights",)  # tracked folders no GPU call needs
MARK = "# ldm: stowed by scripts/gpu_plan.py stow (undo: scripts/gpu_plan.py unstow)"
HOOK = f"""#!/bin/sh
{MARK}
echo "the shipped weights are stowed for a GPU call: run python scripts/gpu_plan.py unstow before committing" >&2
exit 1
"""


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise LdmError(f"git {' '.join(args)} failed in {root}: {detail.strip().splitlines()[-1]}") from None


def _git_path(root: Path, name: str) -> Path:
    """A path inside the repository's git folder (shared by its worktrees where git says so)."""
    path = Path(_git(root, "rev-parse", "--git-path", name).strip())
    return path if path.is_absolute() else root / path


def is_stowed(root: Path = ROOT) -> bool:
    """Whether `stow` ran here and `unstow` has not."""
    exclude = _git_path(root, "info/exclude")
    return exclude.is_file() and MARK in exclude.read_text()


def stow(root: Path = ROOT, folders: tuple[str, ...] = STOWED) -> list[str]:
    """Take `folders` out of the index and ignore them, guarded by the pre-commit hook; the folders stowed."""
    if is_stowed(root):
        raise LdmError("the weights are already stowed (scripts/gpu_plan.py unstow puts them back)")
    present = [f for f in folders if _git(root, "ls-files", "--", f).strip()]
    if not present:
        raise LdmError(f"nothing to stow: git tracks none of {', '.join(folders)} here")
    # files git does not track there stay as they are (ignored while stowed, like the rest)
    if changed := _git(root, "status", "--porcelain", "--untracked-files=no", "--", *present).strip():
        raise LdmError(f"{', '.join(present)} has changes git has not committed ({changed.splitlines()[0].strip()}):"
                       " commit or drop them before stowing")
    hook = _git_path(root, "hooks/pre-commit")
    if hook.exists():
        raise LdmError(f"{hook} exists: stow guards commits with its own hook there; move that one away first")
    _git(root, "rm", "-r", "-q", "--cached", "--", *present)
    exclude = _git_path(root, "info/exclude")
    exclude.parent.mkdir(parents=True, exist_ok=True)
    kept = exclude.read_text() if exclude.is_file() else ""
    lines = [MARK, *(f"/{f}/" for f in present)]
    exclude.write_text(kept + ("" if not kept or kept.endswith("\n") else "\n") + "\n".join(lines) + "\n")
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(HOOK)
    hook.chmod(0o755)
    return present


def unstow(root: Path = ROOT) -> list[str]:
    """Undo `stow`: the folders back in the index as HEAD has them, the exclude lines and the hook gone."""
    exclude = _git_path(root, "info/exclude")
    if not is_stowed(root):
        raise LdmError("nothing is stowed here")
    lines = exclude.read_text().splitlines()
    at = lines.index(MARK)
    ours = [line for line in lines[at + 1:] if line.startswith("/") and line.endswith("/")]
    folders = [line.strip("/") for line in ours]
    if folders:
        _git(root, "reset", "-q", "--", *folders)
    rest = lines[:at] + lines[at + 1 + len(ours):]
    exclude.write_text("".join(f"{line}\n" for line in rest))
    hook = _git_path(root, "hooks/pre-commit")
    if hook.is_file() and MARK in hook.read_text():
        hook.unlink()
    return folders
