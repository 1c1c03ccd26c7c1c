"""The method registry: a new method is one class plus its loss, trained by the real trainer."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from test_trainer import max_diff, run_cfg, unet_state, world  # noqa: F401  (world: a fixture)

from inpo.config import MethodConfig, train_config_from_dict
from inpo.inversion import add_noise
from inpo.methods import METHODS, Inputs, Method, Needs, get_method, register
from inpo.trainer import train


def hinge_loss(model_err_w, model_err_l, ref_err_w, ref_err_l, beta):
    """A loss that no built-in method uses: ``mean(relu(1 - inside))`` on the DPO ``inside``."""
    inside = -0.5 * beta * ((model_err_w - model_err_l) - (ref_err_w - ref_err_l))
    return F.relu(1 - inside).mean(), {"implicit_acc": (inside > 0).float().mean().detach()}


class Recorder(Method):
    """Records what the trainer handed to ``build`` and ``loss``."""

    seen: list[dict] = []

    def build(self, cfg, latents_w, latents_l, cond, gens, alphas_cumprod, *, inversion_unet=None, uncond=None):
        self.seen.append({"latents_l": latents_l is not None, "inversion_unet": inversion_unet is not None,
                          "uncond": uncond is not None, "rows": len(latents_w)})
        return self.hinge_inputs(cfg, latents_w, latents_l, cond, gens, alphas_cumprod)


class Hinge(Recorder):
    """A pair method: DPO's shared noise, one fixed ``t = t_max`` per pair, the hinge loss."""

    name = "test_hinge"

    def validate(self, cfg):
        if cfg.beta <= 0:
            raise ValueError(f"method.beta must be > 0 for {self.name}, got {cfg.beta}")

    def hinge_inputs(self, cfg, latents_w, latents_l, cond, gens, alphas_cumprod):
        x0 = torch.cat([latents_w, latents_l])
        noise = torch.randn(latents_w.shape, generator=gens.pair[0]).to(x0)
        noise2 = torch.cat([noise, noise])
        t2 = torch.full((len(x0),), cfg.t_max, device=x0.device)
        return Inputs(add_noise(x0, noise2, t2, alphas_cumprod), t2, noise2, cond.repeat2())

    def loss(self, cfg, model_err, ref_err, inputs, *, all_reduce_mean=None):
        self.seen[-1]["ref_err"] = ref_err is not None
        mw, ml = model_err.chunk(2)
        rw, rl = ref_err.chunk(2)
        return hinge_loss(mw, ml, rw, rl, cfg.beta)


class WinnerOnly(Recorder):
    """Needs no reference and no loser, but the unconditional branch and an inversion UNet."""

    name = "test_winner_only"

    def needs(self, cfg):
        return Needs(reference=False, loser=False, uncond=True, inversion=True)

    def hinge_inputs(self, cfg, latents_w, latents_l, cond, gens, alphas_cumprod):
        noise = torch.randn(latents_w.shape, generator=gens.w[0]).to(latents_w)
        t = torch.full((len(latents_w),), cfg.t_max, device=latents_w.device)
        return Inputs(add_noise(latents_w, noise, t, alphas_cumprod), t, noise, cond)

    def loss(self, cfg, model_err, ref_err, inputs, *, all_reduce_mean=None):
        self.seen[-1]["ref_err"] = ref_err is not None
        return model_err.mean(), {}


@pytest.fixture
def registered():
    """Register the test methods for one test, then remove them from the registry."""
    classes = [Hinge, WinnerOnly]
    for cls in classes:
        register(cls)
    Recorder.seen.clear()
    yield
    for cls in classes:
        METHODS.pop(cls.name)


def test_builtin_methods_and_their_needs():
    assert {"inpo", "dpo", "sft", "kto"} <= set(METHODS)
    inpo = MethodConfig(name="inpo")
    assert get_method("inpo").needs(inpo) == Needs(reference=True, loser=True, uncond=False, inversion=True)
    inpo.inversion.guidance_scale = 5.0
    assert get_method("inpo").needs(inpo).uncond
    assert get_method("dpo").needs(MethodConfig(name="dpo")) == Needs()
    assert get_method("kto").needs(MethodConfig(name="kto")) == Needs(loser=False, labels=True)  # per image
    assert get_method("kto_pairs").needs(MethodConfig(name="kto_pairs")) == Needs()
    assert get_method("sft").needs(MethodConfig(name="sft")) == Needs(reference=False, loser=False)


def _cfg(tmp_path, method, data=None):
    return {"output_dir": str(tmp_path / "o"), "state_dir": str(tmp_path / "s"), "method": method,
            "data": data or {"index": "pairs.parquet"}}


def test_config_validation_asks_the_registry(tmp_path, registered):
    with pytest.raises(ValueError, match=r"^train: method.name: unknown method 'orpo'; registered: \[.*'dpo'.*\]"):
        train_config_from_dict(_cfg(tmp_path, {"name": "orpo"}))
    assert train_config_from_dict(_cfg(tmp_path, {"name": "test_hinge"})).method.name == "test_hinge"
    with pytest.raises(ValueError, match="method.beta must be > 0 for test_hinge"):  # the method's own check
        train_config_from_dict(_cfg(tmp_path, {"name": "test_hinge", "beta": 0.0}))
    toy = {"examples": "toy_images", "toy_images": 8}
    with pytest.raises(ValueError, match="toy_images has no loser images; method 'dpo' needs pairs"):
        train_config_from_dict(_cfg(tmp_path, {"name": "dpo"}, toy))
    assert train_config_from_dict(_cfg(tmp_path, {"name": "test_winner_only"}, toy)).data.examples == "toy_images"
    with pytest.raises(ValueError, match="'test_hinge' is already registered"):
        register(Hinge)


def test_a_registered_method_trains_through_the_real_trainer(world, tmp_path, registered):  # noqa: F811
    cfg = run_cfg(world, "hinge", tmp_path, method={"name": "test_hinge", "beta": 500.0, "t_max": 500},
                  max_updates=1)
    train(cfg)
    # 2 micro-steps of 2 pairs; the trainer gave the loser, no inversion UNet, no uncond, a reference
    assert Hinge.seen == [{"latents_l": True, "inversion_unet": False, "uncond": False, "rows": 2,
                           "ref_err": True}] * 2
    row = next(csv.DictReader(open(tmp_path / "hinge" / "log.csv")))
    # policy == reference at update 1: inside = 0 up to round-off, so relu(1 - 0) = 1 (DPO would give log 2)
    assert float(row["loss"]) == pytest.approx(1.0, abs=1e-4) and abs(float(row["loss"]) - math.log(2)) > 0.3
    assert max_diff(unet_state(cfg.output_dir), unet_state(world / "base")) > 0


def test_needs_decide_what_the_trainer_provides(world, tmp_path, registered):  # noqa: F811
    cfg = run_cfg(world, "winner", tmp_path, method={"name": "test_winner_only", "t_max": 999},
                  max_updates=1, grad_accum=1)
    train(cfg)
    assert WinnerOnly.seen == [{"latents_l": False, "inversion_unet": True, "uncond": True, "rows": 2,
                                "ref_err": False}]


def test_sft_noise_offset_adds_a_per_channel_constant_drawn_after_the_noise(tmp_path):
    """``method.noise_offset`` (offset noise): noise = eps + offset x N(0,1)[C,1,1], the constant drawn from
    the winner's generator after eps, so offset 0 draws exactly what it drew before; sft only."""
    from inpo.conditioning import Cond
    from inpo.methods import PairGenerators

    sft = get_method("sft")
    lat = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = Cond(torch.zeros(3, 5, 16))
    acp = torch.linspace(0.99, 0.01, 1000)

    def build(offset):
        return sft.build(MethodConfig(name="sft", noise_offset=offset), lat, lat, cond,
                         PairGenerators.for_indices(7, 0, [0, 1, 2]), acp)

    plain, off = build(0.0), build(0.5)
    assert torch.equal(plain.t, off.t)
    diff = off.target - plain.target  # eps is the same draw; the rest is the offset
    assert diff.abs().max() > 0.05
    assert torch.allclose(diff, diff[:, :, :1, :1].expand_as(diff), atol=1e-6)  # constant over the image
    # the offset is the winner generator's next draw of shape [C,1,1], times 0.5
    g = PairGenerators.for_indices(7, 0, [1]).w[0]
    torch.randn(lat.shape[1:], generator=g)
    assert torch.allclose(diff[1], 0.5 * torch.randn(4, 1, 1, generator=g), atol=1e-6)
    assert torch.allclose(off.x_t, add_noise(lat, off.target, off.t, acp), atol=1e-6)
    with pytest.raises(ValueError, match="only method sft"):
        train_config_from_dict(_cfg(tmp_path, {"name": "inpo", "noise_offset": 0.1}))
    with pytest.raises(ValueError, match="noise_offset must be >= 0"):
        train_config_from_dict(_cfg(tmp_path, {"name": "sft", "noise_offset": -0.1}))
