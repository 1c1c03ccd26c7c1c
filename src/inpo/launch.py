"""The command that starts the trainer in every worker (used by the workflow's training rules)."""

from __future__ import annotations

import shlex
import sys


def trainer_command(config_path: str, *, num_processes: int = 1, gpus: int = 0,
                    mixed_precision: str = "no", python: str | None = None) -> str:
    """``accelerate launch ... -m inpo.trainer --config <path>`` as one shell string.

    - ``gpus >= 1``: one process per GPU (``--multi_gpu`` when more than one).
    - no GPU, ``num_processes > 1``: torchrun-started CPU workers on gloo. accelerate's ``--cpu``
      flag would start a single process, and ``--multi_gpu`` alone starts independent
      non-distributed workers on a GPU-less node, so ``ACCELERATE_USE_CPU=true`` is set instead.
    - no GPU, one process: plain ``python -m inpo.trainer`` (no launcher start-up cost).
    """
    python = python or sys.executable
    target = f"-m inpo.trainer --config {shlex.quote(str(config_path))}"
    if gpus < 1 and num_processes <= 1:
        return f"{shlex.quote(python)} {target}"
    n = gpus if gpus >= 1 else num_processes
    env = "" if gpus >= 1 else "ACCELERATE_USE_CPU=true "
    multi = "--multi_gpu " if n > 1 else ""
    return (f"{env}{shlex.quote(python)} -m accelerate.commands.launch --num_processes {n} --num_machines 1 "
            f"{multi}--mixed_precision {mixed_precision} --dynamo_backend no {target}")
