"""A carry too big for one call, sent over several (issue 36; docs/gpu_plan.md).

A device call sends at most 64 MiB (the working tree and the carried folder together), and a stage that starts
from a UNet carries about 100 MiB. The machine stays warm for a short while after a call and keeps the ignored files
a call left in the checkout, so `split` moves the largest files of the packed folder into part folders beside it,
each small enough for a call of its own. Each part call (`plans/gpu_part.sh`) puts its files in `KEPT` on the
machine; the plan's call then `join`s them back into the packed folder, checked by sha256, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from ldm.errors import LdmError

PARTS_FILE = "parts.json"  # in the packed folder: the parts, their files and digests
PART_PREFIX = "-part"  # .gpu -> .gpu-part1, .gpu-part2, ... beside it
KEPT = ".gpu-kept"  # on the machine, in the checkout: the part calls' files (git-ignored)
MANIFESTS = (PARTS_FILE, "pack.json")  # written after the split: never moved into a part


def sha256(path: Path) -> str:
    """The file's sha256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def part_folders(dest: Path) -> list[Path]:
    """The part folders a split of `dest` left beside it, in order."""
    return sorted(dest.parent.glob(f"{dest.name}{PART_PREFIX}*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))


def split(dest: Path, budget: int) -> list[Path]:
    """Move `dest`'s largest files into part folders beside it (each at most `budget` bytes) until what stays is at
    most `budget`; write dest/parts.json. Returns the part folders (none when it already fits)."""
    for old in part_folders(dest):
        shutil.rmtree(old)
    (dest / PARTS_FILE).unlink(missing_ok=True)
    files = sorted((p for p in dest.rglob("*") if p.is_file() and p.name not in MANIFESTS),
                   key=lambda p: -p.stat().st_size)
    left = sum(p.stat().st_size for p in files)
    parts: list[dict[str, int]] = []
    for path in files:
        if left <= budget:
            break
        size = path.stat().st_size
        if size > budget:
            raise LdmError(f"{path.relative_to(dest)} ({size / 2**20:.1f} MiB) is larger than a call can carry "
                           f"beside the working tree ({budget / 2**20:.1f} MiB)")
        home = next((part for part in parts if sum(part.values()) + size <= budget), None)
        if home is None:
            home = {}
            parts.append(home)
        home[str(path.relative_to(dest))] = size
        left -= size
    manifest = []
    for k, part in enumerate(parts, 1):
        folder = dest.parent / f"{dest.name}{PART_PREFIX}{k}"
        digests = {}
        for name in part:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            digests[name] = sha256(dest / name)
            shutil.move(dest / name, target)
        manifest.append({"folder": folder.name, "files": digests})
    if manifest:
        (dest / PARTS_FILE).write_text(json.dumps({"parts": manifest}, indent=2) + "\n")
    return part_folders(dest)


def join(carry: Path, kept: Path) -> int:
    """On the machine: the part calls' files from `kept` back into `carry` where carry/parts.json lists them,
    each checked; the number of files joined. One line if any is missing or differs."""
    manifest = carry / PARTS_FILE
    if not manifest.is_file():
        return 0
    joined = 0
    for part in json.loads(manifest.read_text())["parts"]:
        for name, digest in part["files"].items():
            target = carry / name
            if target.is_file() and sha256(target) == digest:
                continue
            source = kept / name
            if not source.is_file():
                raise LdmError(f"{name} of {part['folder']} is not on this machine ({kept} holds the part calls' "
                               "files): make the part calls again on a warm machine, then this call")
            if sha256(source) != digest:
                raise LdmError(f"{name} of {part['folder']} arrived changed (sha256 differs): make its part call "
                               "again")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
            joined += 1
    return joined


def main(argv: list[str]) -> int:
    """python -m benchmarks.gpu_parts CARRY [KEPT]: join on the machine (plans/gpu_run.sh), before the wheels
    install, since a part may hold one; plain Python, nothing installed needed."""
    try:
        joined = join(Path(argv[0]), Path(argv[1] if len(argv) > 1 else KEPT))
    except LdmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if joined:
        print(f"joined {joined} files from the part calls into {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
