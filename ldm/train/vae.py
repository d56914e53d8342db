"""Train the KL autoencoder (VAE) with Accelerate and store its latent scaling factor."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from ldm.config import Config, downsampling_factor
from ldm.data.augment import Layout, augment_batch
from ldm.data.dataset import WithAlpha, build_dataset
from ldm.errors import LdmError
from ldm.folders import vae_folder
from ldm.media import make_grid, save_image_atomic
from ldm.metrics import heldout_psnr, redrawn_psnr, vae_round_trip
from ldm.models import build_vae, load_vae, save_model
from ldm.train.checkpoints import TrainingState
from ldm.train.loop import Run, StepResult
from ldm.train.losses import vae_loss
from ldm.train.optimization import NonFiniteGuard, make_lr_scheduler, make_optimizer, optimizer_update
from ldm.train.runtime import count_params, ignore_ctrl_c, make_accelerator, start_logs
from ldm.train.schedule import batch_indices, step_generator

log = logging.getLogger("ldm")


class StepBatches:
    """Batch sampler yielding this process's index lists from `start` on (see ldm.train.schedule)."""

    def __init__(self, start: int, max_steps: int, accum: int, batch_size: int, n: int, seed: int, rank: int,
                 world: int):
        self.args = (start, max_steps, accum, batch_size, n, seed, rank, world)

    def __iter__(self):
        start, max_steps, accum, batch_size, n, seed, rank, world = self.args
        for step in range(start, max_steps):
            for micro in range(accum):
                yield batch_indices(step, micro, accum, batch_size, n, seed, rank, world)


@torch.no_grad()
def latent_scaling_factor(vae, dataset, device, count: int, seed: int, batch_size: int = 64) -> float:
    """1 / std of posterior samples over up to `count` images (Stable Diffusion's 0.18215 recipe)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=gen)[:count].tolist()
    samples = []
    for start in range(0, len(idx), batch_size):
        pixels = torch.stack([dataset.load(i) for i in idx[start:start + batch_size]]).to(device)
        dist = vae.encode(pixels).latent_dist
        eps = torch.randn(dist.mean.shape, generator=gen).to(device)
        samples.append((dist.mean + dist.std * eps).float().cpu())
    return float(1.0 / torch.cat(samples).std())


class VAEObjective(torch.nn.Module):
    """The VAE and its loss as one module, so that DDP sees encode and decode in a single forward."""

    def __init__(self, vae, kl_weight: float, recon: str):
        super().__init__()
        self.vae, self.kl_weight, self.recon = vae, kl_weight, recon

    def forward(self, pixels: torch.Tensor, eps: torch.Tensor):
        """(loss, reconstruction term, KL term)."""
        return vae_loss(self.vae, pixels, eps, self.kl_weight, self.recon)


def freeze_encoder(vae) -> None:
    """Freeze everything that maps pixels to latents, so that only the decoder side trains."""
    for part in (vae.encoder, vae.quant_conv):
        if part is not None:
            part.requires_grad_(False)


def _flip(pixels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(pixels.shape[0], generator=gen) < 0.5
    return torch.where(mask[:, None, None, None], pixels.flip(-1), pixels)


def train_vae(cfg: Config, output_dir: str | Path, resume: str | None = None, trust_pickle: bool = False) -> Path:
    """Train the VAE; checkpoints under output_dir/checkpoints/vae, the model in output_dir/vae.

    trust_pickle lets --resume convert a checkpoint that an older ldm saved with pickles.
    """
    output_dir = Path(output_dir)
    tc = cfg.train_vae
    accelerator = make_accelerator(tc, output_dir)

    # 1. data, model, optimizer
    train_set = build_dataset(cfg.data, "train", seed=tc.seed)
    heldout = build_dataset(cfg.data, "heldout", seed=tc.seed)
    start_logs(accelerator, "vae")
    torch.manual_seed(tc.seed)
    model = _model(cfg)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], tc)
    lr_scheduler = make_lr_scheduler(optimizer, tc, accelerator.num_processes)
    objective = VAEObjective(model, tc.kl_weight, tc.recon_loss)
    objective, optimizer, lr_scheduler = accelerator.prepare(objective, optimizer, lr_scheduler)
    run = Run(accelerator, cfg, tc, "vae", output_dir, TrainingState([objective], optimizer, lr_scheduler))

    # 2. resume, then the loop
    start = run.resume(resume, trust_pickle)
    log.info("vae %s params, %d training / %d held-out images, batch %d x %d processes, %s precision",
             count_params(model), len(train_set), len(heldout), tc.batch_size, accelerator.num_processes,
             accelerator.mixed_precision)

    def evaluate(done: int) -> None:
        _evaluate(accelerator, model, heldout, output_dir, done)
        objective.train()

    objective.train()

    def forward(pixels: torch.Tensor, eps: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        loss, rec, kl = objective(pixels, eps)
        return loss, {"recon": float(rec), "kl": float(kl)}

    run.loop(start, pixel_steps(run, model, train_set, start, forward), shown="recon",
             preview=evaluate if len(heldout) else None, preview_every=tc.eval_every, preview_at_end=True)

    # 3. scaling factor (kept when the encoder was frozen: the latents did not change), then the folder
    if accelerator.is_main_process:
        model.eval()
        if tc.train_encoder:
            model.register_to_config(scaling_factor=latent_scaling_factor(model, train_set, accelerator.device,
                                                                          tc.scaling_samples, tc.seed))
        save_model(model, output_dir / "vae")
        log.info("latent scaling factor %.5f; vae -> %s", model.config.scaling_factor, output_dir / "vae")
    run.end()
    return output_dir / "vae"


def check_resolution(cfg: Config, vae) -> None:
    """Refuse a data.resolution that a loaded VAE cannot halve to its latents (validate() checked the config's own
    VAE; one loaded from a folder may differ)."""
    factor = downsampling_factor(vae.config.block_out_channels)
    if cfg.data.resolution % factor:
        raise LdmError(f"config key 'data.resolution': {cfg.data.resolution} is not a multiple of the VAE factor "
                       f"{factor}")


def _model(cfg: Config):
    """The VAE to train: the config's, or train_vae.init_from's (whose architecture then decides), its encoder
    frozen when only the decoder trains."""
    tc = cfg.train_vae
    if tc.init_from:
        model = load_vae(vae_folder(tc.init_from))
        log.info("vae initialised from %s%s", tc.init_from, "" if tc.train_encoder else " (decoder only)")
    else:
        model = build_vae(cfg.vae, cfg.data.resolution)
    check_resolution(cfg, model)
    if not tc.train_encoder:
        freeze_encoder(model)
    return model


Forward = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


def pixel_steps(run: Run, vae, train_set, start: int, forward: Forward) -> Callable[[int], StepResult]:
    """One optimizer step of a model trained on pixels (the VAE, a tiny VAE copying it): its micro-batches from a
    worker pool that decodes images meanwhile, augmented and flipped; `forward(pixels, eps, gen)` gives the loss
    and its parts, eps being a posterior draw's noise in the shape of `vae`'s latents and gen the step's seeded
    generator, for any further draws (a resumed run makes the same ones)."""
    accelerator, tc, cfg = run.accelerator, run.tc, run.cfg
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    objective = run.state.models[0]
    factor = downsampling_factor(vae.config.block_out_channels)
    latent_shape = (vae.config.latent_channels, cfg.data.resolution // factor, cfg.data.resolution // factor)
    accum = tc.gradient_accumulation_steps
    batches = StepBatches(start, tc.max_steps, accum, tc.batch_size, len(train_set), tc.seed, rank, world)
    source = WithAlpha(train_set) if tc.augment > 0 else train_set  # augmentation needs each image's opacity
    loader = torch.utils.data.DataLoader(source, batch_sampler=batches, num_workers=cfg.data.num_workers,
                                         worker_init_fn=ignore_ctrl_c)
    batch_iter = iter(loader)
    guard = NonFiniteGuard(tc.max_nonfinite_steps)

    def step(index: int) -> StepResult:
        loss_ok, parts = True, {}
        for micro in range(accum):
            with accelerator.accumulate(objective):
                gen = step_generator(tc.seed, index, micro, rank)
                batch = next(batch_iter)
                pixels = batch["pixel_values"]
                if tc.augment > 0:
                    pixels = augment_batch(pixels, batch["alpha"], gen, tc.augment)
                if cfg.data.flip:
                    pixels = _flip(pixels, gen)
                eps = torch.randn((pixels.shape[0], *latent_shape), generator=gen)
                loss, terms = forward(pixels.to(device), eps.to(device), gen)
                if not guard.all_finite(accelerator, loss):
                    loss_ok = False
                    continue
                accelerator.backward(loss)
                parts = {"loss": float(loss.detach()), **terms}
        updated, grad_norm = optimizer_update(accelerator, objective, run.state.optimizer, run.state.lr_scheduler,
                                              tc, guard, index, loss_ok)
        return StepResult(updated, grad_norm, lambda: parts)

    return step


def _evaluate(accelerator, model, heldout, output_dir: Path, step: int) -> float:
    model.eval()
    with accelerator.autocast():
        score = heldout_psnr(model, heldout, accelerator.device)
        count = min(len(heldout), 16)
        pixels = torch.stack([heldout.load(i) for i in range(count)]).to(accelerator.device)
        recon = vae_round_trip(model, pixels)
        # the hardest of the evaluation's layouts: half the frame, on colours
        redrawn = redrawn_psnr(model, heldout, accelerator.device, Layout(scale=0.5), "colour")
    pairs = torch.stack([pixels.float(), recon], dim=1).flatten(0, 1)
    save_image_atomic(make_grid((pairs.cpu() + 1) / 2, cols=8), output_dir / "samples" / f"vae-{step:07d}.png")
    accelerator.log({"heldout_psnr": score, "heldout_psnr_half_size_on_colour": redrawn}, step=step)
    log.info("step %d: held-out PSNR %.2f dB (%.2f dB at half size on colours)", step, score, redrawn)
    return score
