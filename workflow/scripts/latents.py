from _log import to_log

to_log(snakemake)  # noqa: F821
import torch  # noqa: E402

from inpo.data.latents import encode_latents  # noqa: E402

smk = snakemake  # noqa: F821
p = smk.params
m = encode_latents(smk.input.index, smk.output[0], pretrained=p.pretrained, vae=p.vae, resolution=p.resolution,
                   dtype=p.dtype, batch_size=p.batch_size, device="cuda" if torch.cuda.is_available() else "cpu")
print({k: m[k] for k in ("layout", "index_rows", "shape", "dtype", "bytes", "encode_seconds", "device", "vae")})
