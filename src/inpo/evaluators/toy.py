"""Toy-world evaluators: the hidden reward and four stand-ins for the paper's evaluators.

Each measures something different, like the real ones:

- ``toy_reward``    the hidden reward itself (what the toy preference labels were made from).
- ``toy_pickscore`` a preference model that is not the labeller: the hidden reward's terms with
                    another taste (colour weight 0.3 instead of 0.6, tilted per prompt, plus a
                    per-prompt offset), so it disagrees with the hidden-reward labels on some
                    pairs (about 15% of the toy pairs), as PickScore does with people;
                    PickScore-like numbers (about 18-23).
- ``toy_hps``       another correlated preference model: the hidden reward terms with different
                    weights and a narrower colour kernel, x 30 (HPS-like numbers, about 15-30).
- ``toy_aesthetic`` image-only quality, caption-independent: contrast between object and
                    background, edge sharpness, object size/centering (about 3-8, aesthetic-like).
- ``toy_clip``      text-image alignment: does the drawn colour name (nearest palette colour), the
                    shape (fill ratio of the bounding box) and the background match the caption;
                    soft, x 40 (CLIP-score-like numbers, about 10-40).

All take the ToyWorld config as keyword arguments (defaults = the default world), e.g.
``build("toy_reward", image_size=32)`` or ``build("toy_reward", world={...})``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from inpo.data.toy import ToyWorld, to_unit_float_bhwc
from inpo.evaluators import check_inputs


def _world(world=None, **kwargs) -> ToyWorld:
    if isinstance(world, ToyWorld):
        return world
    return ToyWorld.from_dict({**(world or {}), **kwargs})


def _prompt_hash(prompt: str, salt: str) -> float:
    """Deterministic pseudo-random number in [0, 1) from (salt, prompt)."""
    h = hashlib.sha256(f"{salt}|{prompt}".encode()).digest()
    return int.from_bytes(h[:8], "little") / 2**64


def _quality(world: ToyWorld, x: np.ndarray) -> np.ndarray:
    """Caption-independent drawing quality in [0, 1]: object/background contrast, crisp edges, a
    clean background, a centred object of some size."""
    f = world.features(x)
    m = f["mask"]
    contrast = np.sqrt(((f["colour"] - f["bg"]) ** 2).sum(-1)) / np.sqrt(3.0)  # [0, 1]
    # sharpness: how binary the soft mask is (crisp edges -> values near 0/1) and low noise in bg
    crisp = np.clip(1.0 - 4.0 * (m * (1 - m)).mean(axis=(1, 2)) / np.maximum(f["area"], 1e-3), 0.0, 1.0)
    gy, gx = np.gradient(x.mean(-1), axis=(1, 2))
    bgnoise = (np.hypot(gx, gy) * (1 - m)).sum(axis=(1, 2)) / np.maximum((1 - m).sum(axis=(1, 2)), 1.0)
    clean = np.exp(-bgnoise / 0.03)
    comp = np.exp(-(((f["centroid"] - 0.5) ** 2).sum(-1)) / (2 * 0.2**2)) * (1 - np.exp(-f["area"] / 0.03))
    return np.clip(0.35 * contrast / 0.6 + 0.25 * crisp + 0.2 * clean + 0.2 * comp, 0.0, 1.0)


class _ToyEvaluator:
    version = "1"

    def __init__(self, world=None, **kwargs):
        self.world = _world(world, **kwargs)

    def _arrays(self, images, prompts) -> np.ndarray:
        check_inputs(images, prompts)
        if len(images) == 0:
            return np.zeros((0, self.world.image_size, self.world.image_size, 3))
        return to_unit_float_bhwc(list(images))

    def score(self, images: Sequence, prompts: Sequence[str]) -> np.ndarray:
        x = self._arrays(images, prompts)
        if not len(x):
            return np.zeros(0, dtype=np.float64)
        return self._score(x, list(prompts))

    def _score(self, x: np.ndarray, prompts: list[str]) -> np.ndarray:  # pragma: no cover
        """Scores of float images ``x`` [B,H,W,3] in [0, 1] (B >= 1)."""
        raise NotImplementedError


class ToyReward(_ToyEvaluator):
    version = "toy-reward-v1"

    def _score(self, x, prompts):
        return self.world.hidden_reward(x, list(prompts)).astype(np.float64)


class ToyPickScore(_ToyEvaluator):
    version = "toy-pickscore-v2"

    def _score(self, x, prompts):
        t = self.world.reward_terms(x, list(prompts))
        out = np.empty(len(prompts), dtype=np.float64)
        for i, p in enumerate(prompts):
            tilt = 0.8 + 0.4 * _prompt_hash(p, "pick-tilt")  # per-prompt colour weight in [0.8, 1.2]
            offset = 0.1 * (_prompt_hash(p, "pick-offset") - 0.5)
            r = (0.3 * tilt * t["colour"][i] + 0.35 * t["size"][i] + 0.35 * t["center"][i]) / (0.3 * tilt + 0.7)
            out[i] = 18.0 + 5.0 * (r + offset)
        return out


class ToyHPS(_ToyEvaluator):
    version = "toy-hps-v2.1"

    def _score(self, x, prompts):
        w = self.world
        f = w.features(x)
        ideal = np.stack([w.ideal_colour(p) for p in prompts])
        d2 = ((f["colour"] - ideal) ** 2).sum(-1)
        colour = np.exp(-d2 / (2 * (0.7 * w.colour_sigma) ** 2))
        size = np.exp(-((f["area"] - w.target_area) ** 2) / (2 * (1.5 * w.size_sigma) ** 2))
        dc2 = ((f["centroid"] - 0.5) ** 2).sum(-1)
        center = np.exp(-dc2 / (2 * w.center_sigma**2))
        presence = 1.0 - np.exp(-f["area"] / 0.01)
        r = 0.5 * colour * presence + 0.3 * size + 0.2 * center * presence
        return (15.0 + 15.0 * r).astype(np.float64)


class ToyAesthetic(_ToyEvaluator):
    """Caption-independent image quality: object/background contrast, edge sharpness, composition."""

    version = "toy-aesthetic-v1"

    def _score(self, x, prompts):
        return (3.0 + 5.0 * _quality(self.world, x)).astype(np.float64)


class ToyCLIP(_ToyEvaluator):
    """Text-image alignment: soft match of drawn colour name, shape and background to the caption."""

    version = "toy-clip-v1"

    def _score(self, x, prompts):
        w = self.world
        f = w.features(x)
        names = list(w.colour_table)
        pal = np.stack([np.asarray(w.colour_table[n]) for n in names])  # [K,3]
        d2 = ((f["colour"][:, None, :] - pal[None]) ** 2).sum(-1)
        p_col = np.exp(-d2 / (2 * 0.15**2))
        p_col = p_col / np.maximum(p_col.sum(1, keepdims=True), 1e-12)  # softmax-like over colour names
        m = f["mask"]
        # shape: fill ratio of the mask's (soft) bounding box: circle ~ pi/4, square ~ 1
        rows = m.max(axis=2)
        cols = m.max(axis=1)
        box = np.maximum(rows.sum(1) * cols.sum(1), 1.0)
        fill = m.sum(axis=(1, 2)) / box
        p_square = 1.0 / (1.0 + np.exp(-(fill - (np.pi / 4 + 1.0) / 2) / 0.04))
        bright = f["bg"].mean(-1)
        p_light = 1.0 / (1.0 + np.exp(-(bright - 0.5) / 0.08))
        presence = 1.0 - np.exp(-f["area"] / 0.01)
        out = np.empty(len(prompts), dtype=np.float64)
        for i, p in enumerate(prompts):
            colour, shape, bg = w.parse(p)
            pc = p_col[i, names.index(colour)]
            ps = p_square[i] if shape == "square" else (1 - p_square[i] if shape == "circle" else 0.5)
            pb = p_light[i] if bg == "light" else 1 - p_light[i]
            out[i] = 10.0 + 30.0 * presence[i] * (0.5 * pc + 0.3 * ps + 0.2 * pb)
        return out


__all__ = ["ToyAesthetic", "ToyCLIP", "ToyHPS", "ToyPickScore", "ToyReward"]
