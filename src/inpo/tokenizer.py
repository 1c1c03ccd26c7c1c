"""The real CLIP BPE tokenizer (49,408 tokens), built offline from the merges that open_clip ships.

No installed package ships OpenAI CLIP's ``vocab.json`` / ``merges.txt`` (the files of
``openai/clip-vit-large-patch14/tokenizer``), but ``open_clip`` ships the same BPE merges
(``bpe_simple_vocab_16e6.txt.gz``) from which the CLIP vocabulary is derived exactly as
``open_clip.tokenizer.SimpleTokenizer`` and OpenAI's ``clip/simple_tokenizer.py`` do:

    bytes_to_unicode() chars (256) + the same chars with '</w>' (256)
    + the first 49152 - 256 - 2 merges, joined  + '<|startoftext|>' + '<|endoftext|>'

We write the HF files into a folder and load them with ``CLIPTokenizer.from_pretrained(folder)``
(in transformers 5, ``CLIPTokenizer(vocab_file=...)`` silently ignores its file arguments).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
VOCAB_SIZE = 49408
MODEL_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP reversible byte -> printable unicode char map (same order as open_clip's)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _bpe_path() -> Path:
    import open_clip

    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """Return (vocab token -> id, merges lines "a b") of the 49,408-token CLIP tokenizer."""
    lines = gzip.open(_bpe_path()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars]
    vocab += ["".join(m.split()) for m in merges]
    vocab += [BOS, EOS]
    encoder = {tok: i for i, tok in enumerate(vocab)}
    if len(encoder) != VOCAB_SIZE:  # pragma: no cover - guards against a changed merges file
        raise RuntimeError(f"CLIP vocabulary has {len(encoder)} tokens, expected {VOCAB_SIZE}")
    return encoder, merges


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a unique temporary file and ``os.replace``: a reader (or a
    concurrent writer of the same folder, e.g. two jobs building the shared tokenizer cache at
    once) never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_clip_tokenizer_files(out_dir: str | Path, *, pad_token: str = EOS) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json into out_dir.

    Each file is written whole with its final content and replaced atomically, so processes that
    build the same folder at the same time (parallel Snakemake jobs) all load a complete tokenizer.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder, merges = clip_vocab_and_merges()
    _write_atomic(out / "vocab.json", json.dumps(encoder, ensure_ascii=False))
    _write_atomic(out / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    cfg = {
        **special,
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    }
    _write_atomic(out / "tokenizer_config.json", json.dumps(cfg, indent=2))
    _write_atomic(out / "special_tokens_map.json", json.dumps(special, indent=2))
    return out


def build_clip_tokenizer(out_dir: str | Path, *, pad_token: str = EOS):
    """Write the CLIP tokenizer files into ``out_dir`` and load them as a ``CLIPTokenizer``.

    ``pad_token``: SD1.5 pads with ``<|endoftext|>`` (the default); SDXL's ``tokenizer_2`` pads
    with ``"!"`` (id 0).
    """
    from transformers import CLIPTokenizer

    out = write_clip_tokenizer_files(out_dir, pad_token=pad_token)
    tok = CLIPTokenizer.from_pretrained(str(out))
    tok.model_max_length = MODEL_MAX_LENGTH
    return tok
