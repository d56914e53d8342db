"""Model and run folders are checked from their files, in one line each, before anything loads."""

import json

import pytest

from ldm.errors import LdmError
from ldm.folders import STOCK_GUIDANCE, check_model_folder, folder_guidance, refuse_pickle, vae_folder


def _folder(root, class_name="StableDiffusionPipeline", parts=("unet", "vae", "tokenizer", "scheduler"),
            weights=("unet", "vae")):
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    for part in parts:
        (root / part).mkdir()
    for part in weights:
        (root / part / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return root


@pytest.mark.parametrize("name", ["model.ckpt", "weights.PT", "x.pth", "optimizer.bin", "states.pkl"])
def test_pickles_are_refused_by_name(name):
    with pytest.raises(LdmError, match="pickle checkpoint"):
        refuse_pickle(name)
    refuse_pickle("model.safetensors")  # safetensors pass


def test_a_complete_folder_passes_and_each_defect_is_named(tmp_path):
    assert check_model_folder(_folder(tmp_path / "ok")) == tmp_path / "ok"
    cases = {
        "missing": (None, "model folder not found"),
        "no-index": (lambda p: p.mkdir(), "no model_index.json"),
        "other-class": (lambda p: _folder(p, class_name="FluxPipeline"), "not a Stable Diffusion pipeline"),
        "no-tokenizer": (lambda p: _folder(p, parts=("unet", "vae", "scheduler")), "no tokenizer/ folder"),
        "pickled-unet": (lambda p: _folder(p, weights=("vae",)), "has no .safetensors weights"),
    }
    for name, (make, message) in cases.items():
        if make:
            make(tmp_path / name)
        with pytest.raises(LdmError, match=message):
            check_model_folder(tmp_path / name)
    (tmp_path / "bad-json").mkdir()
    (tmp_path / "bad-json" / "model_index.json").write_text("{")
    with pytest.raises(LdmError, match="not valid JSON"):
        check_model_folder(tmp_path / "bad-json")


def test_guidance_comes_from_our_config_or_stock_default(tmp_path):
    ours = _folder(tmp_path / "ours")
    (ours / "ldm_config.yaml").write_text("train_unet:\n  guidance_scale: 3.0\n")
    assert folder_guidance(ours) == 3.0
    assert folder_guidance(_folder(tmp_path / "stock")) == STOCK_GUIDANCE
    broken = _folder(tmp_path / "broken")
    (broken / "ldm_config.yaml").write_text("train_unet: {}\n")
    assert folder_guidance(broken) == STOCK_GUIDANCE  # with a warning, not a crash


def test_vae_folder_accepts_a_vae_or_a_pipeline(tmp_path):
    pipeline = _folder(tmp_path / "pipe")
    (pipeline / "vae" / "config.json").write_text("{}")
    assert vae_folder(pipeline) == pipeline / "vae"
    assert vae_folder(pipeline / "vae") == pipeline / "vae"
    with pytest.raises(LdmError, match="no VAE at"):
        vae_folder(tmp_path / "nowhere")


def test_one_function_says_whether_a_unet_is_a_few_step_student(tiny_pipeline, tiny_student):
    import json

    from ldm.folders import is_student

    teacher = json.loads((tiny_pipeline / "unet" / "config.json").read_text())
    student = json.loads((tiny_student.folder / "unet" / "config.json").read_text())
    assert not is_student(teacher) and is_student(student)
    assert is_student(tiny_student.pipe.unet.config) and not is_student({"time_cond_proj_dim": None})
    assert not is_student(None) and not is_student([1, 2])  # a config.json that holds no object


def test_one_refusal_to_distil_from_a_student(tiny_pipeline, tiny_student):
    from ldm.folders import read_json, refuse_student_teacher

    refuse_student_teacher(read_json(tiny_pipeline / "unet" / "config.json"), tiny_pipeline)
    with pytest.raises(LdmError, match=r"student is already a few-step student .*distil from its teacher"):
        refuse_student_teacher(tiny_student.pipe.unet.config, tiny_student.folder)


@pytest.mark.parametrize("source", ["files", "imagefolder"])  # the old name, in folders written before the rename
def test_a_model_folder_names_the_images_it_was_trained_on(tmp_path, source):
    from ldm.folders import folder_training_images

    (tmp_path / "images").mkdir()
    (tmp_path / "ldm_config.yaml").write_text(f"data:\n  source: {source}\n  path: {tmp_path / 'images'}\n")
    assert folder_training_images(tmp_path) == tmp_path / "images"
    (tmp_path / "ldm_config.yaml").write_text(f"data:\n  source: shapes\n  path: {tmp_path / 'images'}\n")
    assert folder_training_images(tmp_path) is None
