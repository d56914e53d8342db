"""The scripts' shared plumbing: exit codes and one-line errors, the training flags folded into the config,
and --resume checked before anything loads."""

import pytest
from support import TINY

from ldm.cli import Parser, check_resume, config_from_args, run, training_parser
from ldm.errors import LdmError


def _exit(main, capsys) -> tuple[int, list[str]]:
    """Run main through cli.run: its exit code and its non-empty stderr lines."""
    with pytest.raises(SystemExit) as info:
        run(main)
    return info.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_user_errors_exit_2_with_one_line_and_interrupts_130(capsys):
    def user_error():
        raise LdmError("no config configs/nowhere.yaml: pass --config")

    def interrupted():
        raise KeyboardInterrupt

    assert _exit(user_error, capsys) == (2, ["error: no config configs/nowhere.yaml: pass --config"])
    assert _exit(interrupted, capsys) == (130, ["interrupted"])


def test_a_bug_still_traces_back_and_success_exits_normally(capsys):
    def bug():
        raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError):
        run(bug)
    run(lambda: print("done"))
    assert capsys.readouterr().out == "done\n"


@pytest.mark.parametrize("argv, message", [
    (["--output-dir", "run", "--nope"], "error: unrecognized arguments: --nope (see --help)"),
    ([], "error: the following arguments are required: --output-dir (see --help)"),
    (["--output-dir", "run", "--mixed-precision", "fp8"], "error: argument --mixed-precision: invalid choice"),
    (["--output-dir", "run", "--max-steps", "many"], "error: argument --max-steps: invalid int value: 'many'"),
])
def test_bad_flags_are_one_line_and_exit_2(capsys, argv, message):
    parser = training_parser("Train.", str(TINY))
    assert isinstance(parser, Parser)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(lines) == 1 and lines[0].startswith(message), lines


def test_flags_become_overrides_of_the_trainer_section(tmp_path):
    args = training_parser("Train.", str(TINY)).parse_args([
        "--output-dir", str(tmp_path / "run"), "--data", str(tmp_path), "--max-steps", "7",
        "--checkpoint-every", "5", "--gradient-accumulation-steps", "2", "--mixed-precision", "no",
        "train_vae.learning_rate=0.01", "train_unet.max_steps=9"])
    cfg = config_from_args(args, "train_vae")
    assert (cfg.data.source, cfg.data.path) == ("files", str(tmp_path))
    tc = cfg.train_vae
    assert (tc.max_steps, tc.checkpoint_every, tc.gradient_accumulation_steps) == (7, 5, 2)
    assert (tc.mixed_precision, tc.learning_rate) == ("no", 0.01)
    assert cfg.train_unet.max_steps == 9  # the flags go to the named section only
    assert config_from_args(training_parser("Train.", str(TINY)).parse_args(["--output-dir", "r"]),
                            "train_unet").train_unet.max_steps == 200  # no flag: the config's own value


def test_resume_is_checked_before_anything_loads(tmp_path):
    parser = training_parser("Train.", str(TINY))
    check_resume(parser.parse_args(["--output-dir", str(tmp_path)]), "vae")  # no --resume: nothing to check
    check_resume(parser.parse_args(["--output-dir", str(tmp_path), "--resume", "latest"]), "vae")  # none yet
    with pytest.raises(LdmError, match="checkpoint not found"):
        check_resume(parser.parse_args(["--output-dir", str(tmp_path), "--resume", str(tmp_path / "gone")]), "vae")
    with pytest.raises(LdmError, match="not a complete ldm checkpoint"):
        check_resume(parser.parse_args(["--output-dir", str(tmp_path), "--resume", str(tmp_path)]), "unet")
