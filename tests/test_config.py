"""Config loading: defaults, overrides, and one-line errors that name the key."""

import pytest
from support import ROOT, TINY

from ldm.config import load_config, parse_overrides, vae_factor
from ldm.errors import LdmError


def test_shipped_configs_load():
    emoji = load_config(ROOT / "configs" / "emoji64.yaml")
    assert emoji.data.resolution == 64 and vae_factor(emoji) == 4
    assert emoji.vae.latent_channels == 4
    tiny = load_config(TINY)
    assert tiny.data.source == "shapes"


def test_overrides_are_typed_yaml():
    cfg = load_config(TINY, ["train_unet.max_steps=7", "train_unet.learning_rate=5e-4", "train_unet.snr_gamma=null",
                             "train_unet.validation_prompts=[a, b]"])
    assert cfg.train_unet.max_steps == 7
    assert cfg.train_unet.learning_rate == pytest.approx(5e-4)
    assert cfg.train_unet.snr_gamma is None
    assert cfg.train_unet.validation_prompts == ["a", "b"]
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


@pytest.mark.parametrize("override, key", [
    ("train_unet.bogus=1", "train_unet.bogus"),
    ("nonsense=1", "nonsense"),
    ("train_unet.max_steps=abc", "train_unet.max_steps"),
    ("train_unet.ema_decay=[1]", "train_unet.ema_decay"),
    ("data.flip=3", "data.flip"),
    ("noise.prediction_type=sample", "noise.prediction_type"),
    ("data.resolution=30", "data.resolution"),
    # shapes diffusers only rejects mid-build, with a traceback
    ("vae.layers_per_block=0", "vae.layers_per_block"),
    ("unet.layers_per_block=0", "unet.layers_per_block"),
    ("vae.block_out_channels=[12,32,32]", "vae.block_out_channels"),
    ("unet.block_out_channels=[]", "unet.block_out_channels"),
    ("unet.norm_num_groups=0", "unet.norm_num_groups"),
    ("vae.latent_channels=0", "vae.latent_channels"),
    ("unet.attention_heads=0", "unet.attention_heads"),
    # values torch rejects with a traceback, or that would train nonsense silently
    ("train_unet.learning_rate=-1", "train_unet.learning_rate"),
    ("train_vae.adam_beta1=1.5", "train_vae.adam_beta1"),
    ("train_unet.ema_decay=1.5", "train_unet.ema_decay"),
    ("train_unet.snr_gamma=-1", "train_unet.snr_gamma"),
    ("train_vae.eval_every=0", "train_vae.eval_every"),
    ("data.resolution=0", "data.resolution"),
    ("data.shapes_count=0", "data.shapes_count"),
    ("noise.num_train_timesteps=0", "noise.num_train_timesteps"),
    ("train_unet.caption_dropout=1", "train_unet.caption_dropout"),
])
def test_bad_keys_and_types_name_the_key(override, key):
    with pytest.raises(LdmError) as err:
        load_config(TINY, [override])
    message = str(err.value)
    assert key in message and "\n" not in message


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(LdmError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(LdmError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(LdmError, match="key=value"):
        load_config(TINY, ["no_equals_sign"])


def test_override_no_stays_a_word():
    from ldm.config import load_config

    cfg = load_config(TINY, ["train_unet.mixed_precision=no", "data.flip=true"])
    assert cfg.train_unet.mixed_precision == "no" and cfg.data.flip is True


@pytest.mark.parametrize("name", ["single_gpu", "multi_gpu", "multi_node", "fsdp", "deepspeed_zero2"])
def test_accelerate_example_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.mixed_precision == "bf16" and not config.use_cpu


@pytest.mark.parametrize("name", ["finetune_lora", "finetune_full"])
def test_finetune_configs_load(name, tmp_path):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", [f"data.path={tmp_path}"])
    assert cfg.finetune.method == name.removeprefix("finetune_")


def test_the_old_name_of_the_files_source_loads_with_one_note(tmp_path, caplog):
    # model folders and checkpoints written before the rename say imagefolder: they keep loading
    from ldm.config import _note_renamed, dump_config

    _note_renamed.cache_clear()
    old = tmp_path / "old.yaml"
    old.write_text(f"data:\n  source: imagefolder\n  path: {tmp_path}\n")
    with caplog.at_level("WARNING", logger="ldm"):
        cfg = load_config(old)
        # a value that only reads differently ("5e-3" is 0.005) is not a renamed one: no note for it
        again = load_config(TINY, ["data.source=imagefolder", f"data.path={tmp_path}", "train_unet.learning_rate=5e-3"])
    assert cfg.data.source == again.data.source == "files" and cfg.data.path == str(tmp_path)
    assert again.train_unet.learning_rate == 0.005
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ["config key 'data.source': 'imagefolder' is now called 'files' (read the same; rename it in your "
                     "config)"]  # one line, once
    assert "source: files" in dump_config(cfg)  # what a new checkpoint or model folder records
    with pytest.raises(LdmError, match="'data.source': 'folders' is not one of shapes, files"):
        load_config(TINY, ["data.source=folders"])
