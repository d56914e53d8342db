"""A view's encodings: computed once with progress, followed by other threads, cached on disk."""


import torch

from ldm.explore.view import DatasetView


def test_dataset_view_encodes_once_with_progress_and_caches_on_disk(tiny_model, tmp_path):
    images = torch.rand(70, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    captions = [f"caption {k}" for k in range(70)]
    view = DatasetView(images, captions, tiny_model, cache_dir=tmp_path)
    reports = []
    view.prepare(lambda done, total: reports.append((done, total)))
    assert reports == [(k, 5) for k in range(1, 6)]  # 2 latent batches of 64, 2 error batches, 1 caption batch
    assert view.latents.shape == (70, 4, 8, 8) and view.errors.shape == (70,) and len(view.embeddings) == 70
    assert len(list(tmp_path.glob("explorer-*.safetensors"))) == 1
    again = DatasetView(images, captions, tiny_model, cache_dir=tmp_path)
    again.prepare(lambda done, total: reports.append("encoded again"))
    assert "encoded again" not in reports and torch.equal(again.latents, view.latents)
    assert torch.equal(again.errors, view.errors) and torch.equal(again.embeddings, view.embeddings)
    changed = DatasetView(images.flip(0), captions, tiny_model, cache_dir=tmp_path)
    changed.prepare()  # other pixels: another key, never the stale file
    assert len(list(tmp_path.glob("explorer-*.safetensors"))) == 2


def test_a_waiting_thread_sees_the_preparing_threads_progress(tiny_model):
    import threading

    images = torch.rand(130, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    view = DatasetView(images, [f"c{k}" for k in range(130)], tiny_model)
    started = threading.Event()

    def slow(done, total):
        started.set()
        threading.Event().wait(0.2)

    worker = threading.Thread(target=view.prepare, args=(slow,))
    worker.start()
    started.wait(30)
    seen = []
    view.wait(lambda done, total: seen.append((done, total)), poll_s=0.05)
    worker.join()
    assert view.ready and seen and all(total == 7 for _, total in seen)
    assert seen == sorted(seen) and seen[0][0] < 7  # the waiter reported the other thread's advance


def test_the_digests_are_the_loaded_weights_whatever_lora_or_taught_word_is_loaded_since(tiny_pipeline, tmp_path):
    from peft import LoraConfig
    from safetensors.torch import save_file

    from ldm.explore.encodings import model_digests
    from ldm.sampling.concepts import load_embedding
    from ldm.sampling.sampler import load_sampling_model

    model = load_sampling_model(tiny_pipeline, "cpu", "bf16")  # its own copy: the session's stays as loaded
    loaded = model_digests(model)
    width = model.pipe.text_encoder.get_input_embeddings().weight.shape[-1]
    save_file({"zorbly": torch.randn(1, width)}, tmp_path / "learned_embeds.safetensors")
    load_embedding(model.pipe, tmp_path / "learned_embeds.safetensors")
    model.pipe.text_encoder.add_adapter(LoraConfig(r=2, target_modules=["query", "value"]), adapter_name="lora0")
    assert any("lora_" in name for name in model.pipe.text_encoder.state_dict())
    assert model_digests(model) == loaded  # the map built before still opens
    with torch.no_grad():
        model.pipe.text_encoder.get_input_embeddings().weight[5] += 1  # a known word's vector: another encoder
    assert model_digests(model)["text_encoder"] != loaded["text_encoder"]
