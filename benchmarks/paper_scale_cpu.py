"""One InPO micro-step at paper scale (SD1.5 architecture, 512 px) on the CPU: time and peak RSS.

Randomly initialised SD1.5-architecture components (no download): the full UNet
(``UNet2DConditionModel`` SD1.5 config, ~860M parameters), a CLIPTextModel of SD1.5 size
(~123M), the SD1.5 ``AutoencoderKL`` config (~84M) and the SD1.5 training schedule. The step is
:func:`inpo.trainer.micro_step` itself (caption dropout, text encode, VAE encode, DDIM inversion
with the policy, policy forward, reference forward, DPO loss), followed by ``loss.backward()``,
exactly as the trainer runs it (fp32, ``mixed_precision: no``), with gradient checkpointing on.

The timestep is fixed (``--t``, default 100 -> 2 inversion calls at levels -99 and 1) because
each SD1.5 UNet call at 512 px takes many seconds on a few CPU cores; ``--t 550`` gives 7 calls,
``--t 999`` all 10. Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the whole
process: model construction included, so it is an upper bound on the step's own need).

    HF_HUB_OFFLINE=1 python benchmarks/paper_scale_cpu.py            # t=100, 1 pair, checkpointing
    HF_HUB_OFFLINE=1 python benchmarks/paper_scale_cpu.py --t 550 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inpo.conditioning import TextConditioner  # noqa: E402
from inpo.config import MethodConfig, ModelConfig, TrainConfig  # noqa: E402
from inpo.inversion import inversion_plan  # noqa: E402
from inpo.models import sd_scheduler_config  # noqa: E402
from inpo.trainer import Models, micro_step  # noqa: E402


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def sd15_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4,
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        cross_attention_dim=768, attention_head_dim=8,
    )


def sd15_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
        sample_size=512, scaling_factor=0.18215,
    )


def sd15_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
    ))


class InMemoryModels(Models):
    """:class:`inpo.trainer.Models` built from in-memory components (same attributes, same encode)."""

    def __init__(self, comps: dict, *, gradient_checkpointing: bool, device="cpu"):
        self.components = comps
        self.policy = comps["unet"].train()
        if gradient_checkpointing:
            self.policy.enable_gradient_checkpointing()
        self.reference = copy.deepcopy(self.policy).requires_grad_(False).eval().to(device)
        self.vae = comps["vae"].requires_grad_(False).eval().to(device)
        comps["text_encoder"].requires_grad_(False).eval().to(device)
        self.text = TextConditioner([comps["tokenizer"]], [comps["text_encoder"]], family="sd15", resolution=512)
        self.alphas_cumprod = comps["scheduler"].alphas_cumprod.to(device=device, dtype=torch.float32)
        self.scaling_factor = self.vae.config.scaling_factor


class Timed:
    """Wraps a callable / module forward and accumulates its wall time and call count."""

    def __init__(self):
        self.s, self.n = 0.0, 0

    def hook(self, module):
        def pre(_m, _a):
            self._t0 = time.perf_counter()

        def post(_m, _a, _o):
            self.s += time.perf_counter() - self._t0
            self.n += 1

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--t", type=int, default=100, help="fixed timestep (100: 2 inversion calls; 550: 7; 999: 10)")
    ap.add_argument("--pairs", type=int, default=1, help="pairs per micro-step (paper: 1)")
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--caption-dropout", type=float, default=0.2)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    # build_tiny_sd15: only for its (offline, locally built) CLIP tokenizer
    from inpo.models import build_tiny_sd15, default_scheduler

    t0 = time.perf_counter()
    tokenizer = build_tiny_sd15()["tokenizer"]
    comps = {
        "unet": sd15_unet(), "vae": sd15_vae(), "text_encoder": sd15_text_encoder(),
        "tokenizer": tokenizer, "scheduler": default_scheduler("sd15"),
    }
    assert comps["scheduler"].config.beta_schedule == sd_scheduler_config()["beta_schedule"]
    n_params = {k: sum(p.numel() for p in comps[k].parameters()) / 1e6 for k in ("unet", "vae", "text_encoder")}
    models = InMemoryModels(comps, gradient_checkpointing=not args.no_checkpointing)
    build_s = time.perf_counter() - t0
    rss_build = rss_gib()

    cfg = TrainConfig(
        output_dir="/tmp/unused", state_dir="/tmp/unused",
        method=MethodConfig(name="inpo", t_min=args.t, t_max=args.t, caption_dropout=args.caption_dropout),
        model=ModelConfig(family="sd15", gradient_checkpointing=not args.no_checkpointing),
        micro_batch_size=args.pairs, grad_accum=1,
    )
    n_calls, level = inversion_plan(args.t, cfg.method.inversion.n_steps)
    B, R = args.pairs, args.resolution
    g = torch.Generator().manual_seed(1)
    batch = {
        "pixel_w": torch.rand(B, 3, R, R, generator=g) * 2 - 1,
        "pixel_l": torch.rand(B, 3, R, R, generator=g) * 2 - 1,
        "caption": ["a photograph of an astronaut riding a horse on the moon"] * B,
        "index": list(range(B)), "epoch": [0] * B,
    }

    # per-component timing by forward hooks (no extra calls): policy forwards = inversion + 1
    pol, ref, vae_enc, txt = Timed(), Timed(), Timed(), Timed()
    pol.hook(models.policy)
    ref.hook(models.reference)
    vae_enc.hook(models.vae.encoder)
    txt.hook(comps["text_encoder"])

    print(f"[paper_scale_cpu] params (M): {n_params}; threads {torch.get_num_threads()}; "
          f"gradient checkpointing {'off' if args.no_checkpointing else 'on'}; built in {build_s:.1f} s, "
          f"RSS after build {rss_build:.2f} GiB", flush=True)
    print(f"[paper_scale_cpu] {B} pair(s) at {R} px (latents 4x{R // 8}x{R // 8}), t={args.t}: "
          f"{n_calls} inversion UNet calls (ends at level {level}), batch {2 * B}", flush=True)

    t_step = time.perf_counter()
    loss, metrics = micro_step(cfg, models, models.policy, batch, "cpu")
    t_fwd = time.perf_counter()
    loss.backward()
    t_end = time.perf_counter()

    step_s = t_end - t_step
    inv_s = pol.s  # includes the policy's training forward; split below
    print(f"[paper_scale_cpu] micro-step (micro_step + backward): {step_s:.1f} s  "
          f"(forward part {t_fwd - t_step:.1f} s, backward {t_end - t_fwd:.1f} s)")
    print(f"  text encode      {txt.s:7.2f} s  ({txt.n} call)")
    print(f"  VAE encode       {vae_enc.s:7.2f} s  ({vae_enc.n} calls, encoder only)")
    print(f"  policy forwards  {inv_s:7.2f} s  ({pol.n} calls = {n_calls} inversion + 1 training)")
    print(f"  reference fwd    {ref.s:7.2f} s  ({ref.n} call)")
    print(f"  backward         {t_end - t_fwd:7.2f} s  (recomputes the forward under checkpointing)")
    other = step_s - txt.s - vae_enc.s - inv_s - ref.s - (t_end - t_fwd)
    print(f"  other            {other:7.2f} s")
    print(f"[paper_scale_cpu] loss {float(loss.detach()):.4f} (log 2 = 0.6931), metrics "
          f"{ {k: round(float(v), 5) for k, v in metrics.items()} }")
    print(f"[paper_scale_cpu] peak RSS {rss_gib():.2f} GiB (after build: {rss_build:.2f} GiB)")


if __name__ == "__main__":
    main()
