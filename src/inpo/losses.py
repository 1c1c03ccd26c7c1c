"""Losses on per-image errors (pure functions).

Every loss takes the per-image mean squared errors ``err = mean_CHW((pred - target)^2)`` of the
policy (``model_err``, with grad) and of the frozen reference (``ref_err``, no grad).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_image_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_CHW((pred - target)^2)`` per image, in float32."""
    return ((pred.float() - target.float()) ** 2).mean(dim=list(range(1, pred.ndim)))


def dpo_loss(
    model_err_w: torch.Tensor,
    model_err_l: torch.Tensor,
    ref_err_w: torch.Tensor,
    ref_err_l: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Diffusion-DPO / InPO loss, per pair then averaged over pairs.

    ``inside = -(beta / 2) * ((m_w - m_l) - (r_w - r_l))``; ``L = mean(-logsigmoid(inside))``.
    At the start (policy == reference) ``inside = 0`` and ``L = log 2``; it looks flat while the
    errors and ``implicit_acc = mean(inside > 0)`` move.
    """
    model_diff = model_err_w - model_err_l
    ref_diff = ref_err_w - ref_err_l
    inside = -0.5 * beta * (model_diff - ref_diff)
    loss = -F.logsigmoid(inside).mean()
    metrics = {
        "implicit_acc": (inside > 0).float().mean().detach(),
        "inside": inside.mean().detach(),
        "model_err_w": model_err_w.mean().detach(),
        "model_err_l": model_err_l.mean().detach(),
        "ref_err_w": ref_err_w.mean().detach(),
        "ref_err_l": ref_err_l.mean().detach(),
    }
    return loss, metrics


def sft_loss(model_err: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Plain epsilon-MSE (averaged over images); no reference model."""
    loss = model_err.mean()
    return loss, {"model_err_w": loss.detach()}


def kto_kl(model_err: torch.Tensor, ref_err: torch.Tensor) -> torch.Tensor:
    """Local KL estimate of Diffusion-KTO: ``clamp(mean_batch(r - m), min=0)``, detached.

    Across processes, average ``mean(r - m)`` first (all-reduce) and clamp after; see
    :class:`inpo.methods.KTO`.
    """
    return (ref_err - model_err).mean().detach().clamp(min=0)


def kto_loss(
    model_err: torch.Tensor,
    ref_err: torch.Tensor,
    desirable: torch.Tensor,
    beta: float,
    kl: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Diffusion-KTO: ``g = r - m``, ``h = sigmoid(sign * beta * (g - KL))``, ``L = mean(1 - h)``.

    ``desirable`` is a bool tensor (sign +1 for a desirable image, -1 for an undesirable one);
    ``kl`` defaults to the local estimate :func:`kto_kl` (detached, clamped at 0).
    """
    g = ref_err - model_err
    if kl is None:
        kl = kto_kl(model_err, ref_err)
    sign = desirable.to(g.dtype) * 2 - 1
    h = torch.sigmoid(sign * beta * (g - kl.detach()))
    loss = (1 - h).mean()
    metrics = {
        "implicit_acc": ((sign * (g - kl)) > 0).float().mean().detach(),
        "kl": kl.detach(),
        "model_err_w": model_err[desirable].mean().detach() if desirable.any() else g.new_tensor(float("nan")),
        "model_err_l": model_err[~desirable].mean().detach() if (~desirable).any() else g.new_tensor(float("nan")),
        "ref_err_w": ref_err[desirable].mean().detach() if desirable.any() else g.new_tensor(float("nan")),
        "ref_err_l": ref_err[~desirable].mean().detach() if (~desirable).any() else g.new_tensor(float("nan")),
    }
    return loss, metrics
