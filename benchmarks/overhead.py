"""Overhead of one InPO micro-step over its own UNet calls (tiny SD1.5-shaped model, CPU).

Measures, in the same run and interleaved repetition by repetition:

- ``step``: one InPO micro-step as the trainer runs it: :func:`inpo.trainer.micro_step` (per-pair
  generators, caption dropout, text encode, VAE encode + posterior sample, DDIM inversion with
  the policy, reparametrized target, policy forward, reference forward, DPO loss) plus
  ``loss.backward()``;
- ``unet``: the same UNet work timed alone on ready-made tensors: the inversion forwards (no
  grad, the same number of calls with the same row counts as the step's inversion), the policy
  forward + backward, the reference forward (no grad).

``ratio = median(step) / median(unet)``; target <= 1.10. A second, instrumented pass (forward
hooks and wrappers around the library functions, no library edits) splits the step into text
encode, VAE encode, inversion UNet calls, inversion noise draws, other inversion arithmetic,
policy forward, reference forward, loss, backward and the rest.

Two timestep modes: a fixed ``t`` (``--t``, default 550 -> 7 inversion calls, all rows active)
and ``t ~ U{0..999}`` drawn per pair by the real per-pair generators (different pairs each
repetition; the component timing replays the same active-row pattern).

    HF_HUB_OFFLINE=1 python benchmarks/overhead.py                 # 4 pairs, t=550 and random t
    HF_HUB_OFFLINE=1 python benchmarks/overhead.py --pairs 8 --reps 50 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import inpo.inversion as inversion_mod  # noqa: E402
import inpo.methods as methods_mod  # noqa: E402
import inpo.trainer as trainer_mod  # noqa: E402
from inpo.conditioning import TextConditioner  # noqa: E402
from inpo.config import MethodConfig, ModelConfig, TrainConfig  # noqa: E402
from inpo.inversion import inversion_grid  # noqa: E402
from inpo.methods import PairGenerators, draw_dropout, draw_timesteps  # noqa: E402
from inpo.models import build_tiny_sd15  # noqa: E402
from inpo.trainer import Models, micro_step  # noqa: E402


class InMemoryModels(Models):
    """:class:`inpo.trainer.Models` from in-memory components (same attributes, inherited encode)."""

    def __init__(self, comps: dict, device="cpu"):
        self.components = comps
        self.policy = comps["unet"].train()
        self.reference = copy.deepcopy(self.policy).requires_grad_(False).eval().to(device)
        self.vae = comps["vae"].requires_grad_(False).eval().to(device)
        comps["text_encoder"].requires_grad_(False).eval().to(device)
        self.text = TextConditioner([comps["tokenizer"]], [comps["text_encoder"]], family="sd15",
                                    resolution=comps["vae"].config.sample_size)
        self.alphas_cumprod = comps["scheduler"].alphas_cumprod.to(device=device, dtype=torch.float32)
        self.scaling_factor = self.vae.config.scaling_factor


def make_batch(B: int, res: int, start: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed + start)
    return {
        "pixel_w": torch.rand(B, 3, res, res, generator=g) * 2 - 1,
        "pixel_l": torch.rand(B, 3, res, res, generator=g) * 2 - 1,
        "caption": [f"a red circle and a blue square, number {start + k}" for k in range(B)],
        "index": list(range(start, start + B)), "epoch": [0] * B,
    }


def step_t(cfg: TrainConfig, batch: dict) -> torch.Tensor:
    """The per-pair timesteps micro_step will draw (same generators, same draw order)."""
    gens = PairGenerators.for_indices(cfg.seed, batch["epoch"][0], batch["index"])
    draw_dropout(gens.pair, cfg.method.caption_dropout)
    return draw_timesteps(gens.pair, cfg.method.t_min, cfg.method.t_max)


def active_rows(t2: torch.Tensor, n_inv: int) -> list[int]:
    """Rows the inversion UNet sees at each level (ddim_invert calls the active subset only)."""
    out = []
    for s in inversion_grid(n_inv):
        k = int((s < t2).sum())
        if k == 0:
            break
        out.append(k)
    return out


def run_step(cfg, models, batch) -> float:
    models.policy.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    loss, _ = micro_step(cfg, models, models.policy, batch, "cpu")
    loss.backward()
    return time.perf_counter() - t0


def run_components(models, rows: list[int], x: torch.Tensor, hidden: torch.Tensor) -> dict[str, float]:
    """The step's UNet work alone: inversion forwards, policy forward+backward, reference forward."""
    policy, ref = models.policy, models.reference
    policy.zero_grad(set_to_none=True)
    n = x.shape[0]
    t_vec = torch.full((n,), 500, dtype=torch.long)
    out = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        for k, s in zip(rows, inversion_grid(10)):
            policy(x[:k], torch.full((k,), s, dtype=torch.long), encoder_hidden_states=hidden[:k])
    t1 = time.perf_counter()
    pred = policy(x, t_vec, encoder_hidden_states=hidden).sample
    ((pred.float() - x) ** 2).mean().backward()
    t2 = time.perf_counter()
    with torch.no_grad():
        ref(x, t_vec, encoder_hidden_states=hidden)
    t3 = time.perf_counter()
    out["inversion"], out["policy_fb"], out["reference"] = t1 - t0, t2 - t1, t3 - t2
    out["total"] = t3 - t0
    return out


# --------------------------------------------------------------------------- instrumented breakdown


@contextmanager
def patched(obj, name, wrapper_factory):
    # a class attribute is restored raw (keeps a classmethod a classmethod)
    orig = obj.__dict__[name] if isinstance(obj, type) else getattr(obj, name)
    setattr(obj, name, wrapper_factory(orig))
    try:
        yield
    finally:
        setattr(obj, name, orig)


def breakdown(cfg, models, batches) -> dict[str, float]:
    """Median seconds per micro-step spent in each part (instrumented; adds a little overhead)."""
    acc: dict[str, float] = defaultdict(float)

    def timer(key):
        def factory(fn):
            def wrapped(*a, **kw):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    acc[key] += time.perf_counter() - t0
            return wrapped
        return factory

    hooks = []

    def hook_unet(module, key_grad, key_nograd):
        state = {}

        def pre(_m, _a):
            state["t0"] = time.perf_counter()

        def post(_m, _a, _o):
            acc[key_grad if torch.is_grad_enabled() else key_nograd] += time.perf_counter() - state["t0"]

        hooks.append(module.register_forward_pre_hook(pre))
        hooks.append(module.register_forward_hook(post))

    hook_unet(models.policy, "policy forward", "inversion UNet calls")
    hook_unet(models.reference, "reference forward", "reference forward")
    rows: list[dict[str, float]] = []
    with patched(trainer_mod.PairGenerators, "for_indices", lambda f: classmethod(timer("pair generators")(f.__func__))), \
            patched(models, "text", timer("text encode")), \
            patched(models, "encode", timer("VAE encode (+posterior draw)")), \
            patched(methods_mod, "ddim_invert", timer("ddim_invert (total)")), \
            patched(inversion_mod, "_draw_noise", timer("inversion noise draws")), \
            patched(methods_mod, "reparametrized_target", timer("reparametrized target")), \
            patched(trainer_mod, "per_image_error", timer("per-image error")), \
            patched(methods_mod.get_method("inpo"), "loss", timer("DPO loss")):
        for batch in batches:
            acc.clear()
            models.policy.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss, _ = micro_step(cfg, models, models.policy, batch, "cpu")
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            acc["backward"] += t2 - t1
            acc["step (instrumented)"] = t2 - t0
            rows.append(dict(acc))
    for h in hooks:
        h.remove()
    keys = rows[0].keys()
    med = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in keys}
    med["inversion other (arithmetic, where, casts)"] = (
        med["ddim_invert (total)"] - med["inversion UNet calls"] - med.get("inversion noise draws", 0.0))
    named = ["pair generators", "text encode", "VAE encode (+posterior draw)", "ddim_invert (total)",
             "reparametrized target", "policy forward", "per-image error", "reference forward",
             "DPO loss", "backward"]
    med["rest of micro_step (dropout draws, cat, build_inputs glue)"] = (
        med["step (instrumented)"] - sum(med.get(k, 0.0) for k in named))
    return med


# --------------------------------------------------------------------------- main


def measure(cfg, models, *, B, res, reps, warmup, random_t, label):
    hidden_dim = models.components["text_encoder"].config.hidden_size
    C, S = models.components["unet"].config.in_channels, models.components["unet"].config.sample_size
    x = torch.randn(2 * B, C, S, S)
    hidden = torch.randn(2 * B, 77, hidden_dim)
    steps, comps, calls = [], defaultdict(list), []
    for r in range(warmup + reps):
        start = (r if random_t else 0) * B
        batch = make_batch(B, res, start)
        t = step_t(cfg, batch)
        rows = active_rows(torch.cat([t, t]), cfg.method.inversion.n_steps)
        # alternate the order so slow drift (a busy neighbour) hits both sides alike
        if r % 2:
            c = run_components(models, rows, x, hidden)
            s = run_step(cfg, models, batch)
        else:
            s = run_step(cfg, models, batch)
            c = run_components(models, rows, x, hidden)
        if r >= warmup:
            steps.append(s)
            calls.append(len(rows))
            for k, v in c.items():
                comps[k].append(v)
    med_step = statistics.median(steps)
    med_c = {k: statistics.median(v) for k, v in comps.items()}
    per_rep = [s / c for s, c in zip(steps, comps["total"])]
    print(f"\n== {label}: {B} pairs (UNet batch {2 * B}), latents {C}x{S}x{S}, {reps} reps after {warmup} warm-up; "
          f"inversion calls per step: mean {statistics.mean(calls):.2f}")
    print(f"  micro-step (micro_step + backward)  median {1e3 * med_step:8.2f} ms")
    print(f"  UNet work alone                     median {1e3 * med_c['total']:8.2f} ms"
          f"  = inversion {1e3 * med_c['inversion']:.2f} + policy fwd+bwd {1e3 * med_c['policy_fb']:.2f}"
          f" + reference {1e3 * med_c['reference']:.2f}")
    print(f"  ratio median(step)/median(unet) = {med_step / med_c['total']:.3f}   "
          f"(per-rep ratio median {statistics.median(per_rep):.3f}, "
          f"sum/sum {sum(steps) / sum(comps['total']):.3f}; target <= 1.10)")
    if not random_t:  # same work every repetition: min/min is the estimate least hit by a busy neighbour
        print(f"  ratio min(step)/min(unet)         = {min(steps) / min(comps['total']):.3f}   "
              f"(min step {1e3 * min(steps):.2f} ms, min UNet work {1e3 * min(comps['total']):.2f} ms)")
    return med_step, med_c


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--t", type=int, default=550, help="fixed timestep of the first mode (550: 7 calls)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: steadier on a shared machine)")
    ap.add_argument("--no-random-t", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    comps = build_tiny_sd15()  # toy defaults: 16 px images, latents 4x16x16
    models = InMemoryModels(comps)
    res = comps["vae"].config.sample_size
    n = {k: sum(p.numel() for p in comps[k].parameters()) / 1e6 for k in ("unet", "vae", "text_encoder")}
    print(f"[overhead] tiny SD1.5-shaped model (params M: {n}), images 3x{res}x{res}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")

    def cfg_for(t_min, t_max):
        return TrainConfig(output_dir="/tmp/unused", state_dir="/tmp/unused",
                           method=MethodConfig(name="inpo", t_min=t_min, t_max=t_max),
                           model=ModelConfig(family="sd15"), micro_batch_size=args.pairs, grad_accum=1)

    B = args.pairs
    modes = [(f"fixed t={args.t}", cfg_for(args.t, args.t), False)]
    if not args.no_random_t:
        modes.append(("random t ~ U{0..999}", cfg_for(0, 999), True))
    for label, cfg, random_t in modes:
        measure(cfg, models, B=B, res=res, reps=args.reps, warmup=args.warmup, random_t=random_t, label=label)
        # the same pairs (same t) as the measured repetitions
        batches = [make_batch(B, res, (r if random_t else 0) * B)
                   for r in range(args.warmup, args.warmup + args.reps)]
        med = breakdown(cfg, models, batches)
        print(f"  breakdown ({label}, instrumented pass, medians per micro-step):")
        total = med["step (instrumented)"]
        order = ["pair generators", "text encode", "VAE encode (+posterior draw)", "ddim_invert (total)",
                 "inversion UNet calls", "inversion noise draws", "inversion other (arithmetic, where, casts)",
                 "reparametrized target", "policy forward", "per-image error", "reference forward", "DPO loss",
                 "backward", "rest of micro_step (dropout draws, cat, build_inputs glue)", "step (instrumented)"]
        for k in order:
            if k in med:
                indent = "      " if k.startswith("inversion ") else "    "
                print(f"{indent}{k:<60s} {1e3 * med[k]:8.3f} ms  {100 * med[k] / total:5.1f} %")


if __name__ == "__main__":
    main()
