"""Evaluators behind one registry and one call signature.

Every evaluator is an object with ``name`` (its registry key, set by :func:`build`), ``version`` (written into every score file and table)
and ``score(images, prompts) -> np.ndarray`` returning one float per (image, prompt) pair.
``images`` is a sequence of ``PIL.Image.Image`` (any mode; each evaluator converts as its
reference does), ``prompts`` a sequence of ``str`` of the same
length. Build one with :func:`build` from its registered name and keyword options.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@runtime_checkable
class Evaluator(Protocol):
    name: str
    version: str

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray: ...


#: One entry per evaluator: name -> "module:factory" (imported on first use, so heavy dependencies
#: load only when used). The built object's ``name`` is this key. Adding an evaluator = one module
#: with a factory taking keyword options + one line here.
REGISTRY: dict[str, str] = {
    "aesthetic": "inpo.evaluators.aesthetic:AestheticEvaluator",
    "pickscore": "inpo.evaluators.pickscore:PickScoreEvaluator",
    "hps": "inpo.evaluators.hps:HpsEvaluator",
    "clip": "inpo.evaluators.clip:ClipEvaluator",
    "toy_reward": "inpo.evaluators.toy:ToyReward",
    "toy_aesthetic": "inpo.evaluators.toy:ToyAesthetic",
    "toy_pickscore": "inpo.evaluators.toy:ToyPickScore",
    "toy_hps": "inpo.evaluators.toy:ToyHPS",
    "toy_clip": "inpo.evaluators.toy:ToyCLIP",
    "coin": "inpo.evaluators.control:Coin",  # no information: relabelling with it = the shuffled-label control
}


def available() -> list[str]:
    return sorted(REGISTRY)


def factory(name: str) -> Callable[..., Evaluator]:
    """The class/factory registered under ``name``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown evaluator {name!r}; available: {', '.join(available())}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def build(name: str, **kwargs) -> Evaluator:
    """Instantiate the evaluator registered under ``name`` with keyword options; its ``name`` is ``name``."""
    evaluator = factory(name)(**kwargs)
    evaluator.name = name
    return evaluator


def check_inputs(images: Sequence, prompts: Sequence[str]) -> None:
    if len(images) != len(prompts):
        raise ValueError(f"score(): {len(images)} images but {len(prompts)} prompts")
