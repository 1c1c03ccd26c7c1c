"""``coin``: a control "evaluator" whose score carries no information about the image's quality.

The score of an (image, prompt) is a uniform number in [0, 1) from a hash of the image's pixels, the
prompt and ``seed``: deterministic, the same on every machine, and independent of what is drawn.
Relabelling pairs with it (``runs.<name>.feedback: coin``, rule ``ai_feedback``) gives each pair a
random winner: the shuffled-label control of the toy world (paper-style claim: a model trained on
labels that carry no preference must not beat its base). Not meant for ``evaluation.evaluators``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from inpo.evaluators import check_inputs


class Coin:
    version = "1"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        check_inputs(images, prompts)
        out = np.empty(len(images), dtype=np.float64)
        for i, (im, p) in enumerate(zip(images, prompts)):
            h = hashlib.blake2b(digest_size=8)
            h.update(f"{self.seed}|{p}|".encode())
            h.update(np.asarray(im.convert("RGB")).tobytes())
            out[i] = int.from_bytes(h.digest(), "little") / 2**64
        return out
