"""One home for model access: hub or local path, offline mode, cache-first download, dtype/device.

Every loader (``models``, ``generate``, ``evaluators``) resolves its sources here, so that

- a source is either a **local path** or a **Hugging Face hub id**, decided by :func:`is_hub_id`
  (a missing path that looks local, e.g. ``./x``, ``/abs/x``, ``~/x``, ``a/b/c`` or ``data/x`` with
  a local ``data/`` folder, is reported as a missing path, never looked up on the hub);
- a hub id is looked up **in the local cache first** (no network), and only then downloaded,
  unless ``HF_HUB_OFFLINE`` is set (:func:`hub_offline`), in which case it fails at once;
- every failure is one :class:`ModelUnavailableError` that names the source and the option or
  config key through which a local copy can be given.

Nothing here depends on the current working directory except the meaning of a relative path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # torch is imported where it is used: the data modules import this one without it
    import torch

T = TypeVar("T")

#: a hub repo id: ``name`` or ``org/name`` (letters, digits, ``._-``), as the hub accepts them
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")

#: dtype names -> torch dtype attribute
DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}

#: seconds the hub may take to answer a metadata request before a download attempt gives up
ETAG_TIMEOUT_S = "5"


class ModelUnavailableError(RuntimeError):
    """A model, weight file or data file is neither on disk nor in the hub cache, nor downloadable."""


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set to a true value: nothing may be downloaded."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def is_hub_id(source: str | Path) -> bool:
    """True when ``source`` names a hub repo rather than a local path.

    A local path: anything that exists; anything absolute or starting with ``.`` or ``~``; more
    than one ``/``; a backslash; or ``dir/name`` whose ``dir`` exists locally (``data/x`` beside a
    ``data/`` folder is a missing file, not the hub repo ``data/x``). Everything else that matches
    the hub's ``org/name`` pattern is a hub id.
    """
    if isinstance(source, Path):
        return False
    s = str(source)
    if not s or Path(s).expanduser().exists():
        return False
    if s.startswith(("/", ".", "~")) or "\\" in s or s.count("/") > 1 or not _HUB_ID.match(s):
        return False
    return not ("/" in s and Path(s.split("/", 1)[0]).is_dir())


def missing_path(what: str, path: str | Path, option: str) -> ModelUnavailableError:
    """The error for a local path that does not exist; ``option`` is where it was given."""
    return ModelUnavailableError(
        f"{what}: local path {str(path)!r} does not exist. Fix `{option}` (a path relative to the "
        f"directory the command runs in, or an absolute path)."
    )


def unavailable(what: str, source: str | Path, option: str, err: BaseException | None = None) -> ModelUnavailableError:
    """The error for a hub id / hub file / URL that is neither cached nor downloadable; ``option``
    is where a local copy can be given. (A missing local path is :func:`missing_path`.)"""
    s = str(source)
    why = ""
    if err is not None:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        why = f" ({type(err).__name__}: {first[:300]})"
    state = (
        "HF_HUB_OFFLINE is set and it is not in the local cache, so nothing is downloaded"
        if hub_offline()
        else "it could not be downloaded"
    )
    return ModelUnavailableError(
        f"cannot load {what} {s!r}: {state}{why}. Download it where the network is available "
        f"(e.g. `hf download {s.split('://')[-1]}`) and pass the local path with `{option}=/path/to/...`, "
        f"or warm the Hugging Face cache (HF_HOME) before going offline."
    )


def local_path(source: str | Path, what: str, option: str) -> Path | None:
    """The existing local path ``source`` names; ``None`` for a hub id; a missing local path raises."""
    if is_hub_id(source):
        return None
    path = Path(source).expanduser()
    if not path.exists():
        raise missing_path(what, source, option)
    return path


def _cache_first(load: Callable[..., T], what: str, source: str, option: str) -> T:
    """``load(local_files_only=True)``; then, unless offline, ``load()`` with a short etag timeout."""
    try:
        return load(local_files_only=True)
    except Exception as err:  # noqa: BLE001 - hub libraries raise OSError/ValueError/EntryNotFound...
        if hub_offline():
            raise unavailable(what, source, option, err) from err
        first = err
    old = os.environ.get("HF_HUB_ETAG_TIMEOUT")
    os.environ["HF_HUB_ETAG_TIMEOUT"] = old or ETAG_TIMEOUT_S
    try:
        return load()
    except Exception as err:  # noqa: BLE001
        raise unavailable(what, source, option, err) from first
    finally:
        if old is None:
            os.environ.pop("HF_HUB_ETAG_TIMEOUT", None)


def from_pretrained(cls: Any, source: str | Path, *, what: str, option: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(source, **kwargs)`` for a local folder or a hub id (cache first)."""
    path = local_path(source, what, option)
    if path is not None:
        return cls.from_pretrained(str(path), **kwargs)
    return _cache_first(lambda **kw: cls.from_pretrained(str(source), **kwargs, **kw), what, str(source), option)


def hub_file(repo_id: str, filename: str, *, what: str, option: str, repo_type: str = "model") -> Path:
    """Local path of ``filename`` in hub repo ``repo_id`` (``repo_type`` "model" or "dataset"): the
    cache first, then a download."""
    from huggingface_hub import hf_hub_download

    return Path(_cache_first(lambda **kw: hf_hub_download(repo_id, filename, repo_type=repo_type, **kw), what,
                             f"{repo_id}/{filename}", option))


def hub_snapshot(repo_id: str, patterns: list[str], *, what: str, option: str, repo_type: str = "dataset") -> Path:
    """Local folder of the files of hub repo ``repo_id`` matching ``patterns`` (``allow_patterns``):
    the cache first, then a download."""
    from huggingface_hub import snapshot_download

    return Path(_cache_first(
        lambda **kw: snapshot_download(repo_id, repo_type=repo_type, allow_patterns=patterns, **kw),
        what, repo_id, option))


def cache_dir() -> Path:
    """Folder for files fetched from plain URLs: ``$INPO_CACHE`` or ``~/.cache/inpo``."""
    return Path(os.environ.get("INPO_CACHE", Path.home() / ".cache" / "inpo"))


def url_file(url: str, filename: str, *, what: str, option: str) -> Path:
    """``cache_dir()/filename``, downloaded once from ``url``; offline and absent -> error at once."""
    target = cache_dir() / filename
    if target.is_file():
        return target
    if hub_offline():
        raise unavailable(what, url, option)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{filename}.{os.getpid()}.tmp")
    try:
        import torch

        torch.hub.download_url_to_file(url, str(tmp), progress=False)
    except Exception as err:  # noqa: BLE001
        raise unavailable(what, url, option, err) from err
    os.replace(tmp, target)
    return target


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``."""
    import torch

    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def resolve_dtype(dtype: str | torch.dtype | None, default: torch.dtype | None = None) -> torch.dtype:
    """A torch dtype from a name (``fp16``, ``float16``, ``bf16``, ``fp32``, ``torch.float32``...);
    ``None`` -> ``default`` (float32 when not given)."""
    import torch

    if dtype is None:
        return torch.float32 if default is None else default
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return getattr(torch, DTYPES[str(dtype).lower().removeprefix("torch.")])
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}") from None


__all__ = [
    "DTYPES",
    "ModelUnavailableError",
    "cache_dir",
    "from_pretrained",
    "hub_file",
    "hub_offline",
    "hub_snapshot",
    "is_hub_id",
    "local_path",
    "missing_path",
    "resolve_device",
    "resolve_dtype",
    "unavailable",
    "url_file",
]
