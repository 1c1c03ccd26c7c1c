"""The shared trainer: invariants of accumulation, processes and resume; method inputs; SDXL."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from inpo.conditioning import Cond
from inpo.config import MethodConfig, train_config_from_dict
from inpo.launch import trainer_command
from inpo.methods import PairGenerators, get_method
from inpo.trainer import changed_settings, resume_settings, train

# A large Adam eps makes the update linear in the gradient: Adam's sign-like first step would blow
# float32 round-off on near-zero gradients up to a full lr-sized step and hide real differences.
LINEAR_OPT = {"learning_rate": 1e-1, "scale_lr": False, "warmup_updates": 0, "adam_eps": 1.0}
COLORS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (200, 200, 30), (30, 200, 200), (200, 30, 200)]


@pytest.fixture(scope="module")
def world(tmp_path_factory, jpeg, write_shard):
    """A tiny random SD1.5 pipeline folder and a filtered index of 12 pairs."""
    from inpo.data.pickapic import filter_pairs
    from inpo.models import build_tiny_sd15, save_pipeline

    root = tmp_path_factory.mktemp("trainer")
    comps = build_tiny_sd15(sample_size=16, unet_block_channels=(32, 64), unet_norm_groups=8,
                            vae_block_channels=(16, 32), vae_norm_groups=8, seed=0)
    save_pipeline(comps, root / "base")
    rows = []
    for i in range(12):
        a, b = COLORS[i % 6], COLORS[(i + 2) % 6]
        rows.append(dict(caption=f"a shape number {i}", label_0=float(i % 2), jpg_0=jpeg(a, size=(20, 16)),
                         jpg_1=jpeg(b, size=(20, 16))))
    write_shard(root / "shards" / "train-00000-of-00001.parquet", rows)
    filter_pairs(root / "shards", root / "pairs.parquet", root / "manifest.json")
    return root


def run_cfg(world, name, tmp, **over):
    method = over.pop("method", {"name": "inpo", "beta": 500.0})
    d = {
        "output_dir": str(tmp / name / "model"),
        "state_dir": str(tmp / name / "state"),
        "method": method,
        "model": {"pretrained": str(world / "base")},
        "data": {"examples": "pairs", "index": str(world / "pairs.parquet"), "resolution": 16},
        "optim": {"learning_rate": 1e-3, "scale_lr": False, "warmup_updates": 2},
        "micro_batch_size": 2, "grad_accum": 2, "max_updates": 2, "seed": 3,
        "checkpoint_every": 0, "log_csv": str(tmp / name / "log.csv"), "progress": False,
    }
    for k, v in over.items():
        d[k] = v
    return train_config_from_dict(d)


def unet_state(path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(path, subfolder="unet").state_dict()


def max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize("method", ["inpo", "dpo"])
def test_batch_times_accumulation_equivalence(world, tmp_path, method):
    m = {"name": method, "beta": 500.0}
    train(run_cfg(world, "b4a1", tmp_path, method=m, micro_batch_size=4, grad_accum=1, optim=LINEAR_OPT))
    train(run_cfg(world, "b1a4", tmp_path, method=m, micro_batch_size=1, grad_accum=4, optim=LINEAR_OPT))
    a, b = unet_state(tmp_path / "b4a1" / "model"), unet_state(tmp_path / "b1a4" / "model")
    base = unet_state(world / "base")
    assert max_diff(a, base) > 1e-4  # it did train
    assert max_diff(a, b) < 1e-5


def test_first_update_loss_is_log2_and_log_columns(world, tmp_path):
    train(run_cfg(world, "log", tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "log" / "log.csv")))
    assert [int(r["update"]) for r in rows] == [1, 2]
    assert float(rows[0]["loss"]) == pytest.approx(math.log(2), abs=1e-5)
    # policy == reference at the first update: equal errors up to float round-off (grad vs no-grad
    # kernels), so the loss is log 2 while implicit_acc is a coin flip on round-off
    assert float(rows[0]["model_err_w"]) == pytest.approx(float(rows[0]["ref_err_w"]), rel=1e-5)
    assert float(rows[1]["loss"]) != pytest.approx(math.log(2), abs=1e-7)
    assert int(rows[1]["pairs_seen"]) == 8
    assert float(rows[0]["lr"]) == pytest.approx(5e-4)  # warm-up: (0 + 1) / 2 of 1e-3


def test_resume_after_kill_is_bit_identical(world, tmp_path):
    full = run_cfg(world, "full", tmp_path, max_updates=3)
    train(full)
    killed = run_cfg(world, "killed", tmp_path, max_updates=3, checkpoint_every=1)
    assert train(killed, stop_after=2)["stopped_at"] == 2
    assert not Path(killed.output_dir).exists()
    train(killed)  # a fresh call resumes from checkpoint-2
    a, b = unet_state(full.output_dir), unet_state(killed.output_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader(open(killed.log_csv)))
    assert [int(r["update"]) for r in rows] == [1, 2, 3]
    ckpts = sorted(p.name for p in Path(killed.state_dir).glob("checkpoint-*"))
    assert ckpts == ["checkpoint-2", "checkpoint-3"]  # rotation keeps 2


def test_resume_only_from_a_checkpoint_of_the_same_settings(world, tmp_path):
    """A run edited under the same name (here beta) does not resume from the old run's checkpoints: it
    trains from the start and equals a fresh run of the new settings; settings that leave the
    trajectory unchanged (a longer run, B x A at the same product) still resume."""
    old = run_cfg(world, "run", tmp_path, max_updates=2, checkpoint_every=1)
    train(old)
    edited = run_cfg(world, "run", tmp_path, method={"name": "inpo", "beta": 900.0}, max_updates=2, checkpoint_every=1)
    assert train(edited)["resumed_from"] == 0
    fresh = run_cfg(world, "fresh", tmp_path, method={"name": "inpo", "beta": 900.0}, max_updates=2)
    train(fresh)
    a, b = unet_state(edited.output_dir), unet_state(fresh.output_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    longer = run_cfg(world, "run", tmp_path, method={"name": "inpo", "beta": 900.0}, max_updates=3,
                     checkpoint_every=1, micro_batch_size=1, grad_accum=4)
    assert train(longer)["resumed_from"] == 2


@pytest.mark.parametrize("method", ["sft", "kto_pairs"])
def test_other_methods_train_and_export(world, tmp_path, method):
    from diffusers import StableDiffusionPipeline

    cfg = run_cfg(world, method, tmp_path, method={"name": method, "beta": 100.0}, max_updates=1)
    train(cfg)
    pipe = StableDiffusionPipeline.from_pretrained(cfg.output_dir)
    assert max_diff(pipe.unet.state_dict(), unet_state(world / "base")) > 0


def _cond(b, seq=77, dim=8):
    return Cond(torch.randn(b, seq, dim))


def test_dpo_shares_noise_and_t_within_a_pair():
    acp = torch.linspace(0.99, 0.01, 1000)
    lw, ll = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    gens = PairGenerators.for_indices(0, 0, [5, 6, 7])
    inp = get_method("dpo").build(MethodConfig(name="dpo"), lw, ll, _cond(3), gens, acp)
    t_w, t_l = inp.t.chunk(2)
    n_w, n_l = inp.target.chunk(2)
    assert torch.equal(t_w, t_l) and torch.equal(n_w, n_l)
    assert len(set(t_w.tolist())) == 3  # one t per pair, not per batch
    assert not torch.equal(n_w[0], n_w[1])


def test_inpo_gives_each_pair_its_t_and_each_image_its_target():
    acp = torch.linspace(0.99, 0.01, 1000)
    lw, ll = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)

    class Unet:  # a deterministic stand-in predictor
        def __call__(self, z, t, encoder_hidden_states):
            return type("O", (), {"sample": torch.tanh(z)})()

    gens = PairGenerators.for_indices(0, 0, [1, 2, 3])
    cfg = MethodConfig(name="inpo", t_min=100, t_max=999)
    inp = get_method("inpo").build(cfg, lw, ll, _cond(3), gens, acp, inversion_unet=Unet())
    t_w, t_l = inp.t.chunk(2)
    assert torch.equal(t_w, t_l) and len(set(t_w.tolist())) == 3 and t_w.min() >= 100
    e_w, e_l = inp.target.chunk(2)
    assert not torch.allclose(e_w, e_l)
    a = acp[inp.t].view(-1, 1, 1, 1)
    x0 = torch.cat([lw, ll])
    torch.testing.assert_close(a.sqrt() * x0 + (1 - a).sqrt() * inp.target, inp.x_t, atol=1e-5, rtol=0)


def test_inversion_cfg_runs_unconditional_branch():
    acp = torch.linspace(0.99, 0.01, 1000)
    seen = []

    class Unet:
        def __call__(self, z, t, encoder_hidden_states):
            seen.append(z.shape[0])
            return type("O", (), {"sample": torch.zeros_like(z)})()

    cfg = MethodConfig(name="inpo", t_min=999, t_max=999)
    cfg.inversion.guidance_scale = 5.0
    lw = torch.randn(1, 4, 8, 8)
    get_method("inpo").build(cfg, lw, lw.clone(), _cond(1), PairGenerators.for_indices(0, 0, [0]), acp,
                             inversion_unet=Unet(), uncond=_cond(1))
    assert seen == [4] * 10  # (uncond + cond) x (winner + loser), 10 levels


def test_sdxl_conditioning_trains(tmp_path, jpeg, write_shard):
    from diffusers import StableDiffusionXLPipeline

    from inpo.data.pickapic import filter_pairs
    from inpo.models import build_tiny_sdxl, save_pipeline

    comps = build_tiny_sdxl(sample_size=16, unet_block_channels=(32, 64), unet_norm_groups=8,
                            vae_block_channels=(16, 32), vae_norm_groups=8)
    save_pipeline(comps, tmp_path / "xl")
    rows = [dict(caption="a red thing", label_0=1.0, jpg_0=jpeg(COLORS[0]), jpg_1=jpeg(COLORS[1]))] * 2
    write_shard(tmp_path / "s" / "train-0.parquet", rows)
    filter_pairs(tmp_path / "s", tmp_path / "p.parquet", tmp_path / "m.json")
    cfg = train_config_from_dict({
        "output_dir": str(tmp_path / "out"), "state_dir": str(tmp_path / "st"),
        "method": {"name": "inpo", "beta": 5000.0},
        "model": {"pretrained": str(tmp_path / "xl"), "family": "sdxl"},
        "data": {"index": str(tmp_path / "p.parquet"), "resolution": 16},
        "optim": {"optimizer": "adafactor", "learning_rate": 1e-3, "scale_lr": False, "warmup_updates": 0},
        "micro_batch_size": 2, "grad_accum": 1, "max_updates": 1, "checkpoint_every": 0, "progress": False,
    })
    train(cfg)
    pipe = StableDiffusionXLPipeline.from_pretrained(cfg.output_dir)
    assert max_diff(pipe.unet.state_dict(), comps["unet"].state_dict()) > 0


@pytest.mark.slow
def test_two_accelerate_processes_equal_one(world, tmp_path):
    cfg1 = run_cfg(world, "p1", tmp_path, micro_batch_size=2, grad_accum=2, optim=LINEAR_OPT)
    cfg2 = run_cfg(world, "p2", tmp_path, micro_batch_size=1, grad_accum=2, optim=LINEAR_OPT)
    paths = []
    for name, cfg in (("p1", cfg1), ("p2", cfg2)):
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(cfg.to_dict()))
        paths.append(p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    train(cfg1)
    cmd = trainer_command(str(paths[1]), num_processes=2)
    assert cmd.startswith("ACCELERATE_USE_CPU=true ") and "--num_processes 2" in cmd
    r = subprocess.run(cmd, shell=True, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" not in r.stdout
    a, b = unet_state(cfg1.output_dir), unet_state(cfg2.output_dir)
    assert max_diff(a, unet_state(world / "base")) > 1e-4
    assert max_diff(a, b) < 1e-5


def test_lr_schedule_warmup_constant_and_cosine():
    from inpo.trainer import lr_at

    assert [lr_at(u, 1.0, 4) for u in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]  # paper: warm-up, constant
    cos = [lr_at(u, 2.0, 2, "cosine", total=12, min_ratio=0.1) for u in range(13)]
    assert cos[:3] == [1.0, 2.0, 2.0]  # warm-up, then the cosine starts at the peak
    assert cos[7] == pytest.approx(0.2 + 1.8 * 0.5)  # half-way from update 2 to 12: the mean of peak and floor
    assert cos[12] == pytest.approx(0.2) and all(a >= b for a, b in zip(cos[2:], cos[3:]))
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(5, 1.0, 0, "linear", total=10)


def test_ema_saves_the_moving_average_and_resumes_it(world, tmp_path):
    """`ema_decay`: the saved UNet is diffusers' EMAModel average of the policy's weights after each update
    (decay 0 after update 1, then min(ema_decay, n / (n + 9))), computed here by hand from a run without
    it (training is the same); a run killed after 2 updates and resumed saves the same average."""
    from diffusers import UNet2DConditionModel

    from inpo.efficiency import snapshot_path

    def snapshot(cfg, u):
        return UNet2DConditionModel.from_pretrained(snapshot_path(cfg.state_dir, u)).state_dict()

    raw = run_cfg(world, "raw", tmp_path, max_updates=3, snapshot_every=1)
    train(raw)
    w = [snapshot(raw, u) for u in (1, 2)]
    w.append(unet_state(raw.output_dir))
    e = {k: w[0][k].double() for k in w[0]}
    for n, wn in ((2, w[1]), (3, w[2])):
        d = min(0.5, n / (n + 9))
        e = {k: d * e[k] + (1 - d) * wn[k].double() for k in e}
    avg = run_cfg(world, "avg", tmp_path, max_updates=3, ema_decay=0.5, snapshot_every=1)
    train(avg)
    got = unet_state(avg.output_dir)
    assert max_diff(got, w[2]) > 1e-5  # the average is not the last weights
    assert max((got[k].double() - e[k]).abs().max().item() for k in e) < 1e-6
    assert max_diff(snapshot(avg, 1), w[0]) < 1e-8  # the average of one update (decay 0; float round-off)
    assert max_diff(snapshot(avg, 2), w[1]) > 1e-6  # snapshots are averages too
    killed = run_cfg(world, "killed", tmp_path, max_updates=3, ema_decay=0.5, checkpoint_every=1)
    assert train(killed, stop_after=2)["stopped_at"] == 2
    assert train(killed)["resumed_from"] == 2
    b = unet_state(killed.output_dir)
    assert all(torch.equal(got[k], b[k]) for k in got)
    # a checkpoint written before a setting existed resumes when the run keeps its default, not otherwise
    ckpt = Path(killed.state_dir) / "checkpoint-2"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    del state["settings"]["ema_decay"]
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    assert changed_settings(ckpt, resume_settings(run_cfg(world, "killed", tmp_path, max_updates=3), 1)) == []
    assert changed_settings(ckpt, resume_settings(killed, 1)) == ["ema_decay: None -> 0.5"]
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\) \(0: no average\), got 1\.0"):
        run_cfg(world, "bad", tmp_path, ema_decay=1.0)
