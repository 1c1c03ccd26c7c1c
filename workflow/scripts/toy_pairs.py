from _log import to_log

to_log(snakemake)  # noqa: F821
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from inpo.data.toy import ToyWorld, make_preference_shards  # noqa: E402

p = snakemake.params.settings  # noqa: F821  (inpo.experiment.toy_settings(config, "pairs"))
out = Path(snakemake.output.manifest).parent  # noqa: F821
manifest = make_preference_shards(snakemake.params.base, ToyWorld.from_dict(p["scene"]), out, seed=p["seed"],  # noqa: F821
                                  **p["pairs"])
Path(snakemake.output.manifest).write_text(json.dumps(manifest, indent=2, default=str))  # noqa: F821
