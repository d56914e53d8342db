"""The README's commands name files that exist, and what they write stays out of git."""

import re
import shutil
import subprocess

import pytest
from support import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_files_the_readme_commands_read_exist():
    named = re.findall(r"--(?:prompts-file|config|config_file)[ =](\S+)", README)
    assert "configs/prompts/emoji.txt" in named
    assert [path for path in named if not (ROOT / path).is_file()] == []


def test_the_example_prompts_file_holds_prompts():
    lines = (ROOT / "configs" / "prompts" / "emoji.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 4 and all(line.strip() == line and line for line in lines)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_the_readme_output_folders_are_ignored_by_git():
    folders = sorted(set(re.findall(r"--out(?:put-dir)? ((?:exported|outputs|runs)/\S+)", README)))
    assert any(f.startswith("exported/") for f in folders)
    ignored = subprocess.run(["git", "check-ignore", *folders], cwd=ROOT, capture_output=True, text=True).stdout
    assert sorted(ignored.split()) == folders
