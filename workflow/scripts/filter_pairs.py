from _log import to_log

to_log(snakemake)  # noqa: F821
import json  # noqa: E402

from inpo.data.pickapic import filter_pairs  # noqa: E402

p = snakemake.params  # noqa: F821
out = snakemake.output  # noqa: F821
manifest = filter_pairs(p.source, out.index, out.manifest, split=p.split, check_images=p.check_images,
                        images_dir=out.images, num_proc=snakemake.threads)  # noqa: F821
print(json.dumps(manifest, indent=2, default=str))
