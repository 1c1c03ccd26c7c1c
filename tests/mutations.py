"""Mutation check of the core: each mutation below is applied alone to a scratch copy of ``src/``,
the tests named beside it run against that copy (``PYTHONPATH``; subprocesses the tests start
inherit it), and a table says which mutations the suite caught and by which test.

    python tests/mutations.py               # all mutations (make mutants)
    python tests/mutations.py --only swap-winner-loser,resume-never
    python tests/mutations.py --list

The mutations are data: ``(id, edits, description, tests)`` with each edit ``(file under src/inpo,
old text, new text)``. Every edit's old text must occur in the file (all occurrences are
replaced); when code moves, update the text here: a stale pattern is reported as such and fails
the run, never silently skipped. Exit status 0 only when every mutation is caught.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    id: str
    edits: tuple[tuple[str, str, str], ...]
    description: str
    tests: tuple[str, ...]


def M(id, edits, description, tests) -> Mutation:  # noqa: N802 - a table constructor
    return Mutation(id, tuple(edits), description, tuple(tests))


PREF = "tests/test_preference_direction.py"
RESUME = "tests/test_resume_kill.py"
INV = "tests/test_inversion_multistep.py"
KTO = "tests/test_kto.py"
INPUTS = "tests/test_method_inputs.py"
SDXL = "tests/test_sdxl_conditioning.py"
TRAINER = "tests/test_trainer.py"

MUTATIONS: list[Mutation] = [
    # ---- the table
    M("swap-winner-loser",
      [("methods.py", "mw, ml = model_err.chunk(2)", "ml, mw = model_err.chunk(2)"),
       ("methods.py", "rw, rl = ref_err.chunk(2)", "rl, rw = ref_err.chunk(2)")],
      "winner and loser swapped in method_loss (preference reversed)", [PREF]),
    M("resume-never", [("trainer.py", "ckpt = latest_checkpoint(cfg.state_dir)", "ckpt = None")],
      "the trainer never resumes (retrains from scratch)", [f"{RESUME}::test_resume_says_where_and_runs_only_the_rest"]),
    M("inversion-on-x0",
      [("inversion.py", "eps_fn(z.to(x0.dtype), s_vec)", "eps_fn(x0, s_vec)"),
       ("inversion.py", "(z[active].to(x0.dtype), s_vec[active])", "(x0[active], s_vec[active])")],
      "DDIM inversion calls the predictor on x0 instead of the current z", [INV]),
    M("kto-kl-sign",
      [("losses.py", "return (ref_err - model_err).mean().detach().clamp(min=0)",
        "return (model_err - ref_err).mean().detach().clamp(min=0)")],
      "KTO's KL estimate with the wrong sign", [f"{KTO}::test_kto_positive_mean_subtracts_kl",
                                                 f"{KTO}::test_kto_negative_mean_clamps_kl_to_zero"]),
    M("kto-kl-no-clamp",
      [("losses.py", "return (ref_err - model_err).mean().detach().clamp(min=0)",
        "return (ref_err - model_err).mean().detach()")],
      "KTO's KL estimate without its clamp at 0", [f"{KTO}::test_kto_positive_mean_subtracts_kl",
                                                    f"{KTO}::test_kto_negative_mean_clamps_kl_to_zero"]),
    M("dpo-loss-sign",
      [("losses.py", "inside = -0.5 * beta * (model_diff - ref_diff)", "inside = 0.5 * beta * (model_diff - ref_diff)")],
      "DPO/InPO loss sign flipped", ["tests/test_losses.py", PREF]),
    M("grid-s-le-t", [("inversion.py", "active = s < t", "active = s <= t")],
      "inversion runs the levels s <= t", ["tests/test_inversion.py", INV]),
    M("loser-own-t",
      [("methods.py", "t2 = torch.cat([t, t])  # one t per pair",
        "t2 = torch.cat([t, draw_timesteps(gens.l, cfg.t_min, cfg.t_max).to(device)])  # one t per pair")],
      "InPO's loser gets its own t", [INV, f"{TRAINER}::test_inpo_gives_each_pair_its_t_and_each_image_its_target"]),
    M("draws-by-slot",
      [("trainer.py", 'PairGenerators.for_indices(cfg.seed, batch["epoch"][0], batch["index"])',
        'PairGenerators.for_indices(cfg.seed, batch["epoch"][0], range(len(batch["index"])))')],
      "per-pair draws seeded by micro-batch slot, not pair index",
      [f"{TRAINER}::test_batch_times_accumulation_equivalence"]),
    # ---- more of our own
    M("kto-allreduce-local",
      [("methods.py", "kl = all_reduce_mean((ref_err - model_err).mean().detach()).clamp(min=0)",
        "kl = kto_kl(model_err, ref_err)")],
      "KTO's KL from the local batch only (not all-reduced across processes)",
      [f"{KTO}::test_kto_two_processes_all_reduce_kl"]),
    M("kto-kl-not-detached",
      [("losses.py", "return (ref_err - model_err).mean().detach().clamp(min=0)",
        "return (ref_err - model_err).mean().clamp(min=0)"),
       ("losses.py", "h = torch.sigmoid(sign * beta * (g - kl.detach()))", "h = torch.sigmoid(sign * beta * (g - kl))")],
      "gradient flows through KTO's KL estimate", [f"{KTO}::test_kto_gradient_treats_kl_as_constant"]),
    M("kto-labels-swapped",
      [("methods.py", "[True] * len(latents_w) + [False] * len(latents_l)",
        "[False] * len(latents_w) + [True] * len(latents_l)")],
      "KTO marks the losers desirable", [INPUTS, PREF]),
    M("beta-not-applied",
      [("losses.py", "inside = -0.5 * beta * (model_diff - ref_diff)", "inside = -0.5 * (model_diff - ref_diff)")],
      "beta missing from the DPO/InPO loss", ["tests/test_losses.py"]),
    M("eta-ignored",
      [("inversion.py", "z_next = z_next + eta * sigma * xi", "z_next = z_next")],
      "inversion's stochastic term dropped", [INV]),
    M("inversion-cfg-dropped",
      [("conditioning.py", "return eps_u + self.guidance_scale * (eps_c - eps_u)", "return eps_c")],
      "classifier-free guidance dropped in the inversion", [INV]),
    M("inversion-next-level-off-by-one",
      [("inversion.py", "_abar(acp, s_vec + step)", "_abar(acp, s_vec + step - 1)")],
      "inversion steps to level s + D - 1", [INV]),
    M("reference-is-policy",
      [("trainer.py", "self.reference = copy.deepcopy(self.policy).requires_grad_(False).eval().to(device, weight_dtype)",
        "self.reference = self.policy")],
      "the reference model is the policy itself", [f"{TRAINER}::test_first_update_loss_is_log2_and_log_columns"]),
    M("timestep-range-off-by-one",
      [("methods.py", "torch.randint(t_min, t_max + 1, (1,), generator=g)", "torch.randint(t_min, t_max, (1,), generator=g)")],
      "timesteps drawn from [t_min, t_max) instead of [t_min, t_max]", [INPUTS]),
    M("lr-warmup-off-by-one",
      [("trainer.py", "return base_lr * (update + 1) / warmup", "return base_lr * update / warmup")],
      "warm-up gives update 0 a zero learning rate", [f"{TRAINER}::test_lr_schedule_warmup_constant_and_cosine"]),
    M("grad-accum-no-divide",
      [("trainer.py", "accelerator.backward(loss / A)", "accelerator.backward(loss)")],
      "gradient accumulation sums the micro-step losses instead of averaging",
      [f"{TRAINER}::test_batch_times_accumulation_equivalence", "tests/test_accumulation.py"]),
    M("epoch-draws-repeat",
      [("methods.py", "derive_seed(seed, epoch, int(i), stream)", "derive_seed(seed, 0, int(i), stream)")],
      "every epoch repeats the first epoch's draws", [f"{RESUME}::test_each_epoch_draws_anew"]),
    M("resume-drops-log-rows",
      [("trainer.py", 'if int(r["update"]) <= start_update]', 'if int(r["update"]) < start_update]')],
      "a resumed run drops the log row of the update it resumed from",
      [f"{RESUME}::test_resume_says_where_and_runs_only_the_rest"]),
    M("resume-one-late",
      [("trainer.py", 'start, pairs_seen, wall = st["update"], st["pairs_seen"]',
        'start, pairs_seen, wall = st["update"] + 1, st["pairs_seen"]')],
      "a resumed run skips the first update after its checkpoint",
      [f"{RESUME}::test_resume_says_where_and_runs_only_the_rest"]),
    M("sdxl-time-ids",
      [("conditioning.py", "[[r, r, 0, 0, r, r]]", "[[r, r, 0, 0, 1024, 1024]]")],
      "SDXL time_ids with a fixed target size", [SDXL]),
    M("sdxl-last-hidden-layer",
      [("conditioning.py", "hidden.append(out.hidden_states[-2])", "hidden.append(out.hidden_states[-1])")],
      "SDXL conditioning from the last instead of the penultimate hidden layer", [SDXL]),
    M("sft-target-is-latent",
      [("methods.py", "return Inputs(add_noise(latents_w, noise, t, alphas_cumprod), t, noise, cond)",
        "return Inputs(add_noise(latents_w, noise, t, alphas_cumprod), t, latents_w, cond)")],
      "SFT regresses the clean latent instead of the noise", [INPUTS]),
    M("kto-shared-t",
      [("methods.py", "t2 = torch.cat([draw_timesteps(gens.w, cfg.t_min, cfg.t_max), draw_timesteps(gens.l, cfg.t_min, cfg.t_max)])",
        "t2 = draw_timesteps(gens.w, cfg.t_min, cfg.t_max).repeat(2)")],
      "KTO's winner and loser share one t (each image should draw its own)", [INPUTS]),
    M("kto-per-image-labels-ignored",
      [("methods.py", "t, noise, cond, desirable.bool())", "t, noise, cond, torch.ones_like(desirable, dtype=torch.bool))")],
      "per-image KTO treats every image as desirable", [INPUTS]),
    M("kto-sampler-unweighted",
      [("data/per_image.py", "w_pos = positive_ratio * n / n_pos if n_pos else 0.0", "w_pos = 1.0 if n_pos else 0.0"),
       ("data/per_image.py", "w_neg = (1 - positive_ratio) * n / (n - n_pos) if n - n_pos else 0.0",
        "w_neg = 1.0 if n - n_pos else 0.0")],
      "the per-image sampler draws uniformly instead of at the positive ratio",
      ["tests/test_per_image.py::test_positive_ratio_within_binomial_bound"]),
]


def apply(mutation: Mutation, src: Path) -> str | None:
    """Apply the edits under ``src`` (a copy of src/); the reason when a pattern is stale."""
    for fname, old, new in mutation.edits:
        path = src / "inpo" / fname
        text = path.read_text()
        if old not in text:
            return f"stale pattern: {old!r} not in src/inpo/{fname}"
        path.write_text(text.replace(old, new))
    return None


def failing_tests(output: str) -> list[str]:
    found = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.M)
    return list(dict.fromkeys(found))


def run_one(mutation: Mutation, timeout: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.id}-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        stale = apply(mutation, src)
        if stale:
            return {"id": mutation.id, "caught": None, "by": stale, "seconds": 0.0}
        env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        probe = subprocess.run([sys.executable, "-c", "import inpo; print(inpo.__file__)"], env=env,
                               capture_output=True, text=True, cwd=REPO)
        if not probe.stdout.strip().startswith(str(src)):
            raise RuntimeError(f"the mutant copy is not the one imported: {probe.stdout}{probe.stderr}")
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:cacheprovider", *mutation.tests]
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=timeout)
            out, rc = r.stdout + r.stderr, r.returncode
        except subprocess.TimeoutExpired:
            out, rc = "", -1
        dt = time.perf_counter() - t0
    if rc == 0:
        return {"id": mutation.id, "caught": False, "by": "all passed", "seconds": dt}
    if rc == 5:
        return {"id": mutation.id, "caught": None, "by": "no tests collected", "seconds": dt}
    if rc == -1:
        return {"id": mutation.id, "caught": True, "by": f"timeout after {timeout} s", "seconds": dt}
    return {"id": mutation.id, "caught": True, "by": ", ".join(failing_tests(out)) or f"pytest exit {rc}",
            "seconds": dt}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated mutation ids")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--timeout", type=int, default=900, help="seconds per mutation's test run")
    args = p.parse_args(argv)
    chosen = MUTATIONS
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {m.id for m in MUTATIONS})
        if unknown:
            p.error(f"unknown mutation id(s) {unknown}")
        chosen = [m for m in MUTATIONS if m.id in wanted]
    if args.list:
        for m in chosen:
            print(f"{m.id:34s} {m.description}  [{' '.join(m.tests)}]")
        return 0
    results = []
    for m in chosen:
        res = run_one(m, args.timeout)
        results.append((m, res))
        mark = {True: "yes", False: "NO", None: "STALE"}[res["caught"]]
        print(f"[mutants] {m.id}: {mark} ({res['seconds']:.0f} s) {res['by']}", flush=True)
    print("\n| mutation | description | caught? | by |\n|---|---|---|---|")
    for m, res in results:
        mark = {True: "yes", False: "**no**", None: "**stale**"}[res["caught"]]
        print(f"| `{m.id}` | {m.description} | {mark} | {res['by']} |")
    missed = [m.id for m, res in results if res["caught"] is not True]
    print(f"\n{len(results) - len(missed)}/{len(results)} caught" + (f"; not caught: {missed}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
