"""Evaluators behind one registry and one call signature.

Every evaluator is an object with ``name``, ``version`` (written into every score file and table)
and ``score(images, prompts) -> np.ndarray`` returning one float per (image, prompt) pair.
``images`` is a sequence of ``PIL.Image.Image`` (RGB), ``prompts`` a sequence of ``str`` of the same
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


_REGISTRY: dict[str, Callable[..., Evaluator]] = {}
# name -> module that registers it (imported lazily so that heavy deps load only when used)
_MODULES = {
    "aesthetic": "inpo.evaluators.aesthetic",
    "pickscore": "inpo.evaluators.pickscore",
    "hps": "inpo.evaluators.hps",
    "clip": "inpo.evaluators.clip",
    "toy_reward": "inpo.evaluators.toy",
    "toy_aesthetic": "inpo.evaluators.toy",
    "toy_pickscore": "inpo.evaluators.toy",
    "toy_hps": "inpo.evaluators.toy",
    "toy_clip": "inpo.evaluators.toy",
}


def register(name: str) -> Callable[[Callable[..., Evaluator]], Callable[..., Evaluator]]:
    """Class/factory decorator: ``@register("aesthetic")``."""

    def deco(factory: Callable[..., Evaluator]) -> Callable[..., Evaluator]:
        _REGISTRY[name] = factory
        return factory

    return deco


def available() -> list[str]:
    return sorted(set(_REGISTRY) | set(_MODULES))


def build(name: str, **kwargs) -> Evaluator:
    """Instantiate the evaluator registered under ``name`` with keyword options."""
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown evaluator {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name](**kwargs)


def check_inputs(images: Sequence, prompts: Sequence[str]) -> None:
    if len(images) != len(prompts):
        raise ValueError(f"score(): {len(images)} images but {len(prompts)} prompts")
