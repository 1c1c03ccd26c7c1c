"""Gradient accumulation averages the micro-steps: one update of 4 pairs as 4 x 1 or 1 x 4 logs the
same loss and the same (pre-clipping) gradient norm. Comparing weights alone would not show a
missing division, since clipping to ``max_grad_norm`` rescales both gradients to the same norm."""

from __future__ import annotations

import pytest
from train_utils import make_run_cfg, read_log

from inpo.trainer import train


def test_accumulated_gradient_is_the_mean(trainer_world, tmp_path):
    method = {"name": "dpo", "beta": 500.0}
    rows = {}
    for b, a in ((4, 1), (1, 4), (2, 2)):
        cfg = make_run_cfg(trainer_world, f"b{b}a{a}", tmp_path, method=method, micro_batch_size=b, grad_accum=a,
                           max_updates=1)
        train(cfg)
        rows[(b, a)] = read_log(cfg.log_csv)
    ref = rows[(4, 1)]
    assert float(ref[0]["grad_norm"]) > 1.0  # above max_grad_norm: clipping is active
    for key in ((1, 4), (2, 2)):
        r, r0 = rows[key][0], ref[0]
        for col in ("loss", "grad_norm", "model_err_w", "model_err_l"):
            assert float(r[col]) == pytest.approx(float(r0[col]), rel=1e-5), (key, col)
