from _log import to_log

to_log(snakemake)  # noqa: F821
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from inpo.data.toy import ToyWorld, make_preference_shards  # noqa: E402

cfg = snakemake.config  # noqa: F821
toy = cfg.get("toy", {})
out = Path(snakemake.output.manifest).parent  # noqa: F821
manifest = make_preference_shards(
    snakemake.params.base, ToyWorld.from_dict(toy.get("scene")), out, seed=cfg.get("seed", 0),  # noqa: F821
    **toy.get("pairs", {}),
)
Path(snakemake.output.manifest).write_text(json.dumps(manifest, indent=2, default=str))  # noqa: F821
