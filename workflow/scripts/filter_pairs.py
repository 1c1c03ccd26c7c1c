from _log import to_log

to_log(snakemake)  # noqa: F821
import json  # noqa: E402

from inpo.data.pickapic import check_schema, filter_pairs  # noqa: E402

p = snakemake.params  # noqa: F821
check_schema(p.source, split=p.split)
manifest = filter_pairs(p.source, snakemake.output.index, snakemake.output.manifest,  # noqa: F821
                        split=p.split, check_images=p.check_images)
print(json.dumps(manifest, indent=2, default=str))
