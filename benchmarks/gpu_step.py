"""GPU throughput of InPO micro-steps at SD1.5 scale (512 px), on our code path.

Self-contained: adds ``<repo>/src`` to ``sys.path`` (the package need not be installed); needs
torch, diffusers and transformers only (no downloads: every model is randomly initialised).

What runs, per micro-step, exactly as :mod:`inpo.trainer` does it: :func:`inpo.trainer.micro_step`
(per-pair generators, caption dropout, conditioning, DDIM inversion with the policy via
:meth:`inpo.methods.InPO.build` / :func:`inpo.inversion.ddim_invert`, reparametrized target,
policy forward, reference forward, DPO loss) under ``torch.autocast(bf16)``, then
``(loss / accum).backward()``. Every ``--accum`` micro-steps the trainer also clips the gradient
and takes an AdamW step: that step is timed separately and amortised over ``--accum``.

Models (random init, SD1.5 architecture):
- policy: ``UNet2DConditionModel`` SD1.5 config (block_out_channels (320, 640, 1280, 1280),
  cross_attention_dim 768, attention_head_dim 8, sample_size 64; ~860M params), fp32 master
  weights, AdamW (wd 1e-2, eps 1e-8);
- reference: a bf16 copy of the policy (frozen);
- text: random ``77 x 768`` embeddings by default (no text encoder); ``--text-encoder`` runs a
  random SD1.5-size ``CLIPTextModel`` (123M) on random token ids instead;
- VAE: skipped by default (the batch carries random 4x64x64 latents: no VAE encode is timed);
  ``--vae`` encodes random 512 px images with a random SD1.5 ``AutoencoderKL`` (bf16).

Timesteps: ``t ~ U{0..999}`` drawn per pair by the real generators (pair indices 0, 1, 2, ...,
the same sequence in every mode, so modes see the same t); inversion calls per step vary from 1
to 10 (expected 6.4). Reported: s per micro-step (mean, median), inversion calls (mean), a
least-squares fit ``time = a + b * calls`` evaluated at the expected 6.4 calls, pairs/s (with
the optimizer step amortised), and peak memory (``torch.cuda.max_memory_allocated``, reset after
warm-up, so it includes the AdamW state). Modes: gradient checkpointing off, then on.
``--t 550`` fixes the timestep instead (7 calls).

    python benchmarks/gpu_step.py                              # H100: 2 modes x (3 warm-up + 20 steps)
    python benchmarks/gpu_step.py --device cpu --steps 1 --tiny  # CPU smoke run (tiny UNet)
    python benchmarks/gpu_step.py --device cpu --steps 1       # CPU smoke run at full size (slow)

The paper reports about 2 pairs/s per GPU (8 GPUs, fp16, 1 pair per micro-step).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inpo.conditioning import Cond  # noqa: E402
from inpo.config import MethodConfig, ModelConfig, TrainConfig  # noqa: E402
from inpo.inversion import inversion_plan  # noqa: E402
from inpo.methods import PairGenerators, draw_dropout, draw_timesteps  # noqa: E402
from inpo.trainer import Models, micro_step  # noqa: E402

SD15_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                 "beta_schedule": "scaled_linear"}


def build_unet(tiny: bool):
    from diffusers import UNet2DConditionModel

    if tiny:
        return UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1, norm_num_groups=16, cross_attention_dim=768, attention_head_dim=8,
        )
    return UNet2DConditionModel(  # the SD1.5 UNet config (diffusers defaults + these)
        sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2, cross_attention_dim=768, attention_head_dim=8,
    )


def build_vae(tiny: bool):
    from diffusers import AutoencoderKL

    n = 1 if tiny else 4
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=(32,) if tiny else (128, 256, 512, 512), layers_per_block=1 if tiny else 2,
        norm_num_groups=8 if tiny else 32, sample_size=16 if tiny else 512, scaling_factor=0.18215,
    )


def build_text_encoder(tiny: bool):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=1 if tiny else 12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
    ))


def alphas_cumprod(device) -> torch.Tensor:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD15_SCHEDULE).alphas_cumprod.to(device=device, dtype=torch.float32)


class BenchModels(Models):
    """:class:`inpo.trainer.Models` from in-memory components. Without a VAE the batch's
    ``pixel_w`` / ``pixel_l`` already hold latents and ``encode`` passes them through; without a
    text encoder the conditioning is a fixed random ``77 x 768`` embedding."""

    def __init__(self, policy, reference, *, device, vae=None, text_encoder=None, seed=0):
        self.policy, self.reference, self.vae = policy, reference, vae
        self.alphas_cumprod = alphas_cumprod(device)
        self.scaling_factor = vae.config.scaling_factor if vae is not None else 1.0
        self.text_encoder = text_encoder
        g = torch.Generator().manual_seed(seed)
        self._emb = torch.randn(1, 77, 768, generator=g).to(device)
        self._ids_gen = g

    def text(self, captions, device) -> Cond:
        n = len(captions)
        if self.text_encoder is None:
            return Cond(self._emb.expand(n, -1, -1).contiguous())
        ids = torch.randint(0, 49408, (n, 77), generator=self._ids_gen).to(device)
        with torch.no_grad():
            return Cond(self.text_encoder(ids)[0])

    def encode(self, pixels, gens):
        if self.vae is None:
            return pixels.float()
        return super().encode(pixels, gens)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def expected_calls(cfg: TrainConfig) -> float:
    m = cfg.method
    ts = range(m.t_min, m.t_max + 1)
    return sum(inversion_plan(t, m.inversion.n_steps)[0] for t in ts) / len(ts)


def pair_t(cfg: TrainConfig, index: int) -> int:
    gens = PairGenerators.for_indices(cfg.seed, 0, [index])
    draw_dropout(gens.pair, cfg.method.caption_dropout)
    return int(draw_timesteps(gens.pair, cfg.method.t_min, cfg.method.t_max)[0])


def make_batch(B, start, *, latent, pixel, use_vae, device, gen):
    shape = (B, 3, pixel, pixel) if use_vae else (B, 4, latent, latent)
    x_w = torch.randn(shape, generator=gen).clamp(-1, 1) if use_vae else torch.randn(shape, generator=gen)
    x_l = torch.randn(shape, generator=gen).clamp(-1, 1) if use_vae else torch.randn(shape, generator=gen)
    return {"pixel_w": x_w.to(device), "pixel_l": x_l.to(device), "caption": ["a photo"] * B,
            "index": list(range(start, start + B)), "epoch": [0] * B}


def fit_at(xs, ys, x0):
    """Least-squares line through (xs, ys) evaluated at x0 (None if xs are all equal)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None, None, None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    return a + b * x0, a, b


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=20, help="measured micro-steps per mode")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up micro-steps per mode (+1 optimizer step)")
    ap.add_argument("--pairs", type=int, default=1, help="pairs per micro-step (paper: 1)")
    ap.add_argument("--accum", type=int, default=128, help="micro-steps per optimizer update (amortisation)")
    ap.add_argument("--t", type=int, default=None, help="fixed timestep (default: t ~ U{0..999} per pair)")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                    help="autocast dtype (default bf16 on cuda, fp32 on cpu)")
    ap.add_argument("--modes", default="plain,ckpt", help="comma list of: plain, ckpt (gradient checkpointing)")
    ap.add_argument("--tiny", action="store_true", help="tiny UNet (latents 4x16x16) for a quick smoke run")
    ap.add_argument("--vae", action="store_true", help="encode random images with a random SD1.5 VAE")
    ap.add_argument("--text-encoder", action="store_true", help="random SD1.5-size CLIPTextModel on random ids")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmul/cudnn (fp32 parts)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    amp_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    assert set(modes) <= {"plain", "ckpt"}, modes

    t0 = time.perf_counter()
    with torch.device(device):  # initialise parameters directly on the device
        policy = build_unet(args.tiny)
        vae = build_vae(args.tiny) if args.vae else None
        te = build_text_encoder(args.tiny) if args.text_encoder else None
    policy.to(device).train()
    reference = copy.deepcopy(policy).requires_grad_(False).eval().to(device, amp_dtype)
    if vae is not None:
        vae.requires_grad_(False).eval().to(device, amp_dtype)
    if te is not None:
        te.requires_grad_(False).eval().to(device, amp_dtype)
    models = BenchModels(policy, reference, device=device, vae=vae, text_encoder=te)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=1e-2, eps=1e-8)
    sync(device)
    build_s = time.perf_counter() - t0

    latent = policy.config.sample_size
    pixel = vae.config.sample_size if vae is not None else 8 * latent
    t_min, t_max = (args.t, args.t) if args.t is not None else (0, 999)
    cfg = TrainConfig(output_dir="/tmp/unused", state_dir="/tmp/unused",
                      method=MethodConfig(name="inpo", t_min=t_min, t_max=t_max),
                      model=ModelConfig(family="sd15"), micro_batch_size=args.pairs, grad_accum=args.accum,
                      mixed_precision="bf16" if precision == "bf16" else "no")
    e_calls = expected_calls(cfg)
    n_params = sum(p.numel() for p in policy.parameters()) / 1e6
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"[gpu_step] device {dev_name}; torch {torch.__version__}; "
          f"{'bf16 autocast' if precision == 'bf16' else 'fp32 (no autocast)'}, "
          f"fp32 master weights, reference {amp_dtype}; policy UNet {n_params:.1f}M params; "
          f"latents 4x{latent}x{latent} ({pixel} px); {args.pairs} pair(s)/micro-step; "
          f"VAE {'on' if vae is not None else 'skipped (random latents)'}; "
          f"text {'random CLIPTextModel' if te is not None else 'random 77x768 embeddings'}; "
          f"t {f'= {args.t}' if args.t is not None else '~ U{0..999}'} (expected inversion calls "
          f"{e_calls:.2f}); built in {build_s:.1f} s", flush=True)

    autocast = torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=precision == "bf16")
    gen = torch.Generator().manual_seed(123)

    def one_micro_step(index: int) -> tuple[float, int]:
        batch = make_batch(args.pairs, index, latent=latent, pixel=pixel, use_vae=vae is not None,
                           device=device, gen=gen)
        calls = max(inversion_plan(pair_t(cfg, i), cfg.method.inversion.n_steps)[0] for i in batch["index"])
        sync(device)
        t_start = time.perf_counter()
        with autocast:
            loss, _ = micro_step(cfg, models, policy, batch, device)
        (loss / args.accum).backward()
        sync(device)
        return time.perf_counter() - t_start, calls

    def optimizer_step() -> float:
        sync(device)
        t_start = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        return time.perf_counter() - t_start

    results = {}
    for mode in modes:
        if mode == "ckpt":
            policy.enable_gradient_checkpointing()
        else:
            policy.disable_gradient_checkpointing()
        optimizer.zero_grad(set_to_none=True)
        warm_idx = 10_000  # warm-up pairs are not the measured ones
        for w in range(args.warmup):
            one_micro_step(warm_idx + w * args.pairs)
        opt_warm = optimizer_step()  # allocates the AdamW state on the first mode
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times, calls = [], []
        for s in range(args.steps):
            dt, c = one_micro_step(s * args.pairs)
            times.append(dt)
            calls.append(c)
        opt_s = optimizer_step()
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        mean_t = statistics.mean(times)
        fit, a, b = fit_at(calls, times, e_calls)
        per_step = mean_t + opt_s / args.accum
        per_step_fit = (fit + opt_s / args.accum) if fit is not None else None
        results[mode] = (per_step, per_step_fit, peak)
        print(f"\n== gradient checkpointing {'ON' if mode == 'ckpt' else 'off'}: {args.steps} micro-steps after "
              f"{args.warmup} warm-up")
        print(f"  s/micro-step: mean {mean_t:.3f}, median {statistics.median(times):.3f}, "
              f"min {min(times):.3f}, max {max(times):.3f}; inversion calls mean {statistics.mean(calls):.2f}")
        if fit is not None:
            print(f"  fit time = {a:.3f} + {b:.4f} * calls -> {fit:.3f} s at the expected {e_calls:.2f} calls")
        print(f"  optimizer step (clip + AdamW): {opt_s:.3f} s (warm-up one {opt_warm:.3f} s), "
              f"amortised over {args.accum}: {opt_s / args.accum:.4f} s/micro-step")
        rate = args.pairs / per_step
        line = f"  pairs/s: {rate:.3f} (measured t mix)"
        if per_step_fit:
            line += f", {args.pairs / per_step_fit:.3f} (fit at {e_calls:.2f} calls)"
        print(line + "   [paper: ~2 pairs/s per GPU]")
        print(f"  peak memory (max_memory_allocated): {peak:.2f} GiB")

    print("\n[gpu_step] summary: " + "; ".join(
        f"{m}: {r[0]:.3f} s/step, {args.pairs / r[0]:.2f} pairs/s"
        + (f" ({args.pairs / r[1]:.2f} at {e_calls:.1f} calls)" if r[1] else "") + f", peak {r[2]:.2f} GiB"
        for m, r in results.items()))


if __name__ == "__main__":
    main()
