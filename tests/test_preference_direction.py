"""Preference direction through the trainer: an update on fixed pairs (red preferred over blue)
lowers the preferred image's error relative to the reference, compared with the rejected one's.

Measured independently of the method code: the trained UNet and the base (reference) UNet are
loaded from disk and their errors computed here on many fresh draws at the training timestep, on
the winner's and the loser's latents (VAE posterior means of the two colours). One update with a
small, linear (large Adam eps) step keeps the change first order, so its sign is the gradient's:
a reversed preference (winner and loser swapped anywhere on the way) flips it.
"""

from __future__ import annotations

import pytest
import torch
from train_utils import LOSER_RGB, RESOLUTION, WINNER_RGB, make_run_cfg, read_log

from inpo.inversion import ddim_invert, reparametrized_target
from inpo.trainer import train

T = 200  # one training timestep (t_min = t_max): the evaluation can use the same
N_EVAL = 256
STEP = {"learning_rate": 1e-2, "scale_lr": False, "warmup_updates": 0, "adam_eps": 1.0}


class Judge:
    """Errors of a UNet on the winner and loser colours, on fixed draws at timestep ``T``."""

    def __init__(self, base_dir):
        from inpo.models import load_components

        comps = load_components(str(base_dir), family="sd15")
        vae, tok, enc = comps["vae"], comps["tokenizer"], comps["text_encoder"]
        self.acp = comps["scheduler"].alphas_cumprod.float()
        with torch.no_grad():
            def latent(rgb):
                px = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
                px = px.expand(1, 3, RESOLUTION, RESOLUTION)
                return vae.encode(px).latent_dist.mean * vae.config.scaling_factor

            self.x0 = {"w": latent(WINNER_RGB), "l": latent(LOSER_RGB)}
            ids = tok([f"a colour swatch {i % 4}" for i in range(N_EVAL)], padding="max_length",
                      max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
            self.cond = enc(ids)[0]
        g = torch.Generator().manual_seed(1234)
        self.noise = torch.randn(N_EVAL, *self.x0["w"].shape[1:], generator=g)
        self.t = torch.full((N_EVAL,), T)
        self.base = self.unet(base_dir)

    @staticmethod
    def unet(path):
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel.from_pretrained(path, subfolder="unet").eval()

    @torch.no_grad()
    def noise_errors(self, unet, side):
        """Diffusion-DPO / KTO inputs: ``x_t = sqrt(a) x0 + sqrt(1 - a) eps``, target ``eps``."""
        a = self.acp[T]
        x_t = a.sqrt() * self.x0[side] + (1 - a).sqrt() * self.noise
        return ((unet(x_t, self.t, encoder_hidden_states=self.cond).sample - self.noise) ** 2).mean((1, 2, 3))

    @torch.no_grad()
    def inversion_errors(self, unet, side):
        """InPO inputs: deterministic DDIM inversion by the reference, reparametrized target."""
        x0 = self.x0[side].expand(N_EVAL, -1, -1, -1)
        z = ddim_invert(lambda z, s: self.base(z, s, encoder_hidden_states=self.cond).sample,
                        x0, self.t, self.acp, n_inv=10, eta=0.0)
        target = reparametrized_target(z, x0, self.t, self.acp)
        return ((unet(z, self.t, encoder_hidden_states=self.cond).sample - target) ** 2).mean((1, 2, 3))

    def margin(self, trained_dir, kind):
        """Per draw: ``(m_w - r_w) - (m_l - r_l)`` (negative: the winner gained on the loser)."""
        errors = self.noise_errors if kind == "noise" else self.inversion_errors
        pol = self.unet(trained_dir)
        return (errors(pol, "w") - errors(self.base, "w")) - (errors(pol, "l") - errors(self.base, "l"))


@pytest.fixture(scope="module")
def judge(trainer_world):
    return Judge(trainer_world / "base")


@pytest.mark.parametrize("method,beta,kind", [("dpo", 500.0, "noise"), ("inpo", 500.0, "inversion"),
                                              ("kto_pairs", 500.0, "noise")])
def test_one_update_prefers_the_winner(trainer_world, judge, tmp_path, method, beta, kind):
    method_cfg = {"name": method, "beta": beta, "t_min": T, "t_max": T, "caption_dropout": 0.0,
                  "inversion": {"eta": 0.0}}
    cfg = make_run_cfg(trainer_world, method, tmp_path, method=method_cfg, micro_batch_size=4, grad_accum=4,
                       max_updates=1, optim=STEP)
    train(cfg)
    row = read_log(cfg.log_csv)[0]
    assert float(row["grad_norm"]) > 0
    d = judge.margin(cfg.output_dir, kind)
    acc = (d < 0).float().mean().item()  # the implicit accuracy, measured here
    print(f"{method}: margin {d.mean().item():.3g} (|d| mean {d.abs().mean().item():.3g}), implicit acc {acc:.3f}")
    assert d.mean().item() < 0 and acc > 0.5, (d.mean().item(), acc)
