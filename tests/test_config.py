"""Renamed config keys: an old key fails with one line naming it and its new name, wherever a user
can still write it (the workflow config, a run's overrides, the ablation sheet, a run config)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from inpo import experiment as P
from inpo.config import train_config_from_dict

ROOT = Path(__file__).resolve().parents[1]


def _move(d: dict, new: str, old: str) -> None:
    d[old] = d.pop(new)


# (old key, how the default config writes it the old way, the message)
CASES = [
    ("kind", lambda c: _move(c, "family", "kind"), "config key `kind` was renamed to `family`"),
    ("toy.world", lambda c: _move(c["toy"], "scene", "world"), "config key `toy.world` was renamed to `toy.scene`"),
    ("model.kind", lambda c: c["runs"]["inpo"]["overrides"].update({"model.kind": "sd15"}),
     "runs.inpo.overrides: config key `model.kind` was renamed to `model.family`"),
    ("data.kind", lambda c: _move(c["training"]["data"], "examples", "kind"),
     "config key `training.data.kind` was renamed to `training.data.examples`"),
]


@pytest.mark.parametrize("old,write_old,message", CASES, ids=[c[0] for c in CASES])
def test_a_renamed_key_fails_naming_its_new_name(old, write_old, message, tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    P.check_config_keys(config)  # the shipped config uses the new names
    bad = copy.deepcopy(config)
    write_old(bad)
    with pytest.raises(ValueError) as err:
        P.check_config_keys(bad)
    assert str(err.value) == message  # one line, nothing else

    if old in ("model.kind", "data.kind"):  # run keys: also in the ablation sheet and in a run config
        new = {"model.kind": "model.family", "data.kind": "data.examples"}[old]
        value = {"model.kind": "sd15", "data.kind": "images"}[old]
        sheet = tmp_path / "sheet.tsv"
        sheet.write_text("run\tsweep\tsetting\tvalue\tbase_run\toverrides\tpaper_row\n"
                         f"x\tbeta\tbeta\t1\tinpo\tmethod.beta=1; {old}={value}\t\n")
        with pytest.raises(ValueError) as err:
            P.read_ablations(sheet, config["runs"])
        assert str(err.value) == f"{sheet} row 2 column 'overrides': config key `{old}` was renamed to `{new}`"
        section, key = old.split(".")
        run = {"output_dir": "o", "state_dir": "s", "method": {"name": "sft"},
               "data": {"examples": "toy_images"}, section: {key: value}}
        with pytest.raises(ValueError) as err:
            train_config_from_dict(run, where="run.yaml")
        assert str(err.value) == f"run.yaml: config key `{old}` was renamed to `{new}`"


def test_the_workflow_names_a_renamed_key_before_the_schema(tmp_path):
    """Wiring: the workflow runs the check before its schema (which would only say `kind` is not allowed)."""
    from workflow_utils import copy_workflow, run_snakemake

    r = run_snakemake(copy_workflow(tmp_path), "-n", "all", "--config", "kind=sd15", check=False, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "config key `kind` was renamed to `family`" in out, out[-2000:]
    assert "Additional properties are not allowed" not in out


def test_a_missing_ablation_sheet_names_the_key(tmp_path):
    """`--config ablations=null` passes the string 'null': the error says so, not a bare pandas error."""
    with pytest.raises(FileNotFoundError, match=r"^ablations: no such sheet 'null' .*ablations: null"):
        P.read_ablations("null", {})
    with pytest.raises(FileNotFoundError, match=f"no such sheet '{tmp_path}/x.tsv'"):
        P.read_ablations(tmp_path / "x.tsv", {})


def test_numbers_in_exponent_form_are_numbers_and_bad_types_name_the_key():
    """PyYAML reads YAML 1.1, where `1e-4` (no dot) is the string '1e-4': `--set optim.learning_rate=1e-4`
    (benchmarks/toy_effect.py) and an ablation row `optim.learning_rate=1e-4` reached AdamW as a string
    and failed inside torch ("'<=' not supported between 'float' and 'str'")."""
    assert P.parse_overrides("optim.learning_rate=1e-4; method.beta=2000; x=2.5E+3; init=sft; t=-3e-2") == {
        "optim.learning_rate": 1e-4, "method.beta": 2000, "x": 2500.0, "init": "sft", "t": -0.03}
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4"  # the YAML 1.1 trap the checks below close
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    base = P.run_train_config(config, "inpo", P.all_runs(config, None))
    d = copy.deepcopy(base)
    d["optim"]["learning_rate"] = "1e-4"  # a run config written with `learning_rate: 1e-4`
    cfg = train_config_from_dict(d)
    assert cfg.optim.learning_rate == 1e-4 and isinstance(cfg.optim.learning_rate, float)
    assert train_config_from_dict(copy.deepcopy(base)).method.beta == 2000  # an int in a float field stays as written
    for key, value, message in [("optim.learning_rate", "fast", r"train\.optim\.learning_rate: expected a number, got 'fast'"),
                                ("max_updates", 2.5, r"train\.max_updates: expected an integer, got 2\.5"),
                                ("progress", "yes", r"train\.progress: expected true or false, got 'yes'"),
                                ("method.beta", True, r"train\.method\.beta: expected a number, got True")]:
        d = copy.deepcopy(base)
        P.set_dotted(d, key, value)
        with pytest.raises(TypeError, match=f"^{message}$"):
            train_config_from_dict(d)


def test_toy_effect_sets_a_key_of_every_arm_or_of_one():
    """`benchmarks/toy_effect.py --set key=value` changes every arm, `--set arm:key=value` one arm (after the
    shared keys): how to ask whether a recipe change helps InPO more than Diffusion-DPO in one run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("toy_effect", ROOT / "benchmarks" / "toy_effect.py")
    te = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(te)
    sets = te.arm_overrides(["method.t_min=500", "dpo:optim.learning_rate=1e-4", "dpo:method.t_min=0",
                             "inpo:model.note=a:b=c"], ["inpo", "dpo", "shuffled"])
    assert sets == {"inpo": {"method.t_min": 500, "model.note": "a:b=c"},
                    "dpo": {"method.t_min": 0, "optim.learning_rate": 1e-4}, "shuffled": {"method.t_min": 500}}
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    d = te.arm_config(copy.deepcopy(config), "dpo", "base", Path("pairs.parquet"), Path("out"), 30, sets["dpo"])
    assert (d["method"]["name"], d["method"]["t_min"], d["optim"]["learning_rate"], d["max_updates"]) == ("dpo", 0, 1e-4, 30)
    with pytest.raises(ValueError, match=r"^--set 'kto:method\.beta=1': no arm 'kto' \(--arms: inpo,dpo\)$"):
        te.arm_overrides(["kto:method.beta=1"], ["inpo", "dpo"])


def test_toy_pairs_sample_as_the_evaluation_unless_set():
    """toy.pairs' sampler (steps, CFG, scheduler) is evaluation.generation's unless toy.pairs sets it;
    the toy stages' tracked settings hold everything their scripts read."""
    from inpo.experiment import toy_pairs_settings, toy_settings

    config = {"seed": 3, "toy": {"scene": {"backgrounds": ["dark"]}, "pairs": {"n_prompts": 8, "guidance_scale": 5.0}},
              "evaluation": {"generation": {"steps": 12, "guidance_scale": 7.5, "scheduler": "euler", "batch_size": 100}}}
    assert toy_pairs_settings(config) == {"steps": 12, "guidance_scale": 5.0, "scheduler": "euler", "n_prompts": 8}
    assert toy_settings(config, "pairs") == {"scene": {"backgrounds": ["dark"]}, "seed": 3,
                                             "pairs": toy_pairs_settings(config)}
    assert toy_settings(config, "init") == {"toy": {"scene": {"backgrounds": ["dark"]}, "model": {}, "vae": {}}, "seed": 3}
    with pytest.raises(ValueError, match="stage must be 'init' or 'pairs', got 'base'"):
        toy_settings(config, "base")
    # the toy config: its pairs are drawn as its evaluation draws
    toy = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    gen = toy["evaluation"]["generation"]
    assert {k: toy_pairs_settings(toy)[k] for k in ("steps", "guidance_scale", "scheduler")} == \
        {k: gen[k] for k in ("steps", "guidance_scale", "scheduler")}


def test_prompt_set_params_track_the_toy_scene_and_leave_the_paper_as_it_was():
    """Rule prompts' params: in the toy world the scene its captions come from (an edit redraws the prompts);
    in the paper the set's entry alone, as before, so that a code update reruns no paper generation."""
    from inpo.experiment import prompt_set_params

    paper = {"world": "real", "evaluation": {"prompt_sets": {"parti": {"name": "parti", "limit": 8}}}}
    assert prompt_set_params(paper, "parti") == {"name": "parti", "limit": 8}
    toy = {"world": "toy", "toy": {"scene": {"backgrounds": ["dark"]}},
           "evaluation": {"prompt_sets": {"toy": {"n": 400, "seed": 1}}}}
    assert prompt_set_params(toy, "toy") == {"n": 400, "seed": 1, "toy_scene": {"backgrounds": ["dark"]}}
