"""Inspecting a prediction store: ``segaudit info``.

Reads only metadata (no chunk is decoded), so it is instant on any store size, and it
works on stores the reader refuses (an incomplete store, a stacked store without
``image_ids``), saying why they would be refused.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputError, one_line
from . import remote
from .predictions import STACKED_ARRAY, _open_group, open_predictions, stacked_array, store_location
from .writer import COMPLETE_ATTR, INCOMPLETE_ATTR, WRITER_ATTR

_BLOSC_SHUFFLE = {-1: "auto", 0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}


def codec_text(codec) -> str:
    """A short description of one zarr (format 3) or numcodecs (format 2) codec."""
    if hasattr(codec, "to_dict"):
        spec = codec.to_dict()
        name, config = spec.get("name", type(codec).__name__), dict(spec.get("configuration") or {})
    elif hasattr(codec, "get_config"):
        config = dict(codec.get_config())
        name = config.pop("id", type(codec).__name__)
    else:
        return type(codec).__name__
    if name == "blosc" and isinstance(config.get("shuffle"), int):
        config["shuffle"] = _BLOSC_SHUFFLE.get(config["shuffle"], config["shuffle"])
    for key, default in (("blocksize", 0), ("typesize", None), ("checksum", False)):
        if key in config and (default is None or config[key] == default):
            del config[key]
    inner = ", ".join(f"{key}={value}" for key, value in config.items())
    return f"{name}({inner})" if inner else str(name)


def array_codecs(array) -> str:
    parts = [codec_text(codec) for codec in (*array.filters, *array.compressors)]
    return " + ".join(parts) or "none"


def _chunk_text(array) -> list[int]:
    return [int(n) for n in array.chunks]


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError


def _disk_bytes(path: Path | str, storage_options: dict | None = None) -> int:
    if remote.is_url(path):  # the objects' sizes as the filesystem lists them
        try:
            fs, root = remote.filesystem(path, storage_options, "prediction store")
            return int(fs.du(root, total=True))
        except Exception as exc:  # noqa: BLE001 (each filesystem raises its own types)
            raise remote.remote_error(path, exc, "prediction store", remote.timeout_of(storage_options)) from None
    if path.is_file():
        return path.stat().st_size
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def _most_common(values: list) -> tuple[object, int]:
    counted = Counter(tuple(v) if isinstance(v, list) else v for v in values)
    value, count = counted.most_common(1)[0]
    return (list(value) if isinstance(value, tuple) else value), count


def inspect_store(path: str | Path, storage_options: dict | None = None) -> dict:
    """Describe a prediction store from its metadata.

    Parameters
    ----------
    path : str or Path
        A local store, or a URL (see :func:`segaudit.io.predictions.open_predictions`).
    storage_options : dict, optional
        The URL's fsspec options.

    Returns
    -------
    dict
        ``path``, ``zarr_format``, ``layout``, ``images``, ``n_classes``, ``classes``,
        ``axes`` ("K,H,W" or "H,W,K", per image), ``shape`` (per image, when all images
        share it) or ``shape_min``/``shape_max``, ``dtype``, ``chunks`` (the most common
        chunk shape), ``chunks_vary``, ``chunk_bytes``, ``codec``, ``bytes_on_disk``,
        ``bytes_stored`` (uncompressed), ``kind``, ``channels_last``, ``complete`` (True,
        False, or None when the store was not written by segaudit), ``incomplete_reason``,
        ``writer``, ``readable`` and ``problem`` (why ``segaudit score`` would refuse it),
        ``folds_recorded`` (images whose array names the fold that predicted it, see
        :mod:`segaudit.io.folds`) and ``fold_images`` (fold -> images, as text keys).

    Raises
    ------
    InputError
        If the path is missing, not a zarr group, or its metadata cannot be read.
    """
    group = _open_group(path, storage_options)
    shown = store_location(path)
    try:
        return _describe(shown, group, path, storage_options)
    except InputError:
        raise
    except Exception as exc:  # malformed metadata deeper in the store: zarr raises many types
        problem = one_line(exc, "no details")
        raise InputError(f"{shown}: cannot read the store's metadata ({type(exc).__name__}: {problem})") from None


def _describe(path: Path | str, group, location: str | Path, storage_options: dict | None) -> dict:
    import zarr

    attrs = dict(group.attrs)
    channels_last = attrs.get("channels_last", False) is True
    class_axis = -1 if channels_last else 0

    arrays: dict[str, object] = {}
    stacked = stacked_array(group)
    if stacked is not None:
        layout = "stacked"
        arrays[STACKED_ARRAY] = stacked
        n_images = int(stacked.shape[0])
        per_image = [list(stacked.shape[1:])]
    else:
        layout = "per-image"
        for name, member in group.members(max_depth=None):
            if isinstance(member, zarr.Array):
                arrays[name] = member
        n_images = len(arrays)
        per_image = [list(a.shape) for a in arrays.values()]

    info: dict = {
        "path": str(path),
        "zarr_format": int(group.metadata.zarr_format),
        "layout": layout,
        "images": n_images,
        "n_classes": None,
        "classes": attrs.get("classes"),
        "axes": "H,W,K" if channels_last else "K,H,W",
        "shape": None,
        "shape_min": None,
        "shape_max": None,
        "dtype": None,
        "chunks": None,
        "chunks_vary": False,
        "chunk_bytes": None,
        "shards": None,
        "codec": None,
        "bytes_on_disk": _disk_bytes(location if remote.is_url(location) else path, storage_options),
        "bytes_stored": 0,
        "kind": attrs.get("kind", "probabilities"),
        "channels_last": attrs.get("channels_last", False),
        "complete": attrs.get(COMPLETE_ATTR) if isinstance(attrs.get(COMPLETE_ATTR), bool) else None,
        "incomplete_reason": attrs.get(INCOMPLETE_ATTR),
        "writer": attrs.get(WRITER_ATTR),
        "readable": True,
        "problem": None,
        "folds_recorded": 0,
        "fold_images": {},
    }
    if arrays:
        three_d = [s for s in per_image if len(s) == 3]
        volumes = [s for s in per_image if len(s) == 4] if layout == "per-image" else []
        if volumes:  # (K, Z, Y, X) volumes; a store of only volumes describes them as its shape
            info["volumes"] = len(volumes)
            if not three_d:
                three_d, class_axis, info["axes"] = volumes, 0, "K,Z,Y,X"
        if three_d:
            classes_seen = sorted({s[class_axis] for s in three_d})
            info["n_classes"] = classes_seen[0] if len(classes_seen) == 1 else classes_seen
            if all(s == three_d[0] for s in three_d):
                info["shape"] = three_d[0]
            else:
                info["shape_min"] = [min(s[i] for s in three_d) for i in range(len(three_d[0]))]
                info["shape_max"] = [max(s[i] for s in three_d) for i in range(len(three_d[0]))]
        dtypes = sorted({str(np.dtype(a.dtype).newbyteorder("=")) for a in arrays.values()})
        info["dtype"] = dtypes[0] if len(dtypes) == 1 else dtypes
        chunks, count = _most_common([_chunk_text(a) for a in arrays.values()])
        info["chunks"] = chunks
        info["chunks_vary"] = count != len(arrays)
        itemsize = max(np.dtype(a.dtype).itemsize for a in arrays.values())
        info["chunk_bytes"] = int(np.prod(chunks)) * itemsize
        shards = [list(a.shards) for a in arrays.values() if getattr(a, "shards", None)]
        info["shards"] = _most_common(shards)[0] if shards else None
        codecs, count = _most_common([array_codecs(a) for a in arrays.values()])
        info["codec"] = codecs if count == len(arrays) else f"{codecs} (most arrays; others differ)"
        info["bytes_stored"] = int(sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in arrays.values()))
        if layout == "per-image":
            from .folds import FOLD_ATTR

            recorded = Counter(a.attrs.get(FOLD_ATTR) for a in arrays.values())
            recorded.pop(None, None)
            info["folds_recorded"] = sum(recorded.values())
            info["fold_images"] = {str(fold): recorded[fold] for fold in sorted(recorded, key=str)}

    try:
        open_predictions(location, storage_options=storage_options)
    except InputError as exc:
        info["readable"] = False
        info["problem"] = str(exc)
    return info


def _shape_text(info: dict) -> str:
    axes = info["axes"]
    if info["shape"] is not None:
        return f"({', '.join(map(str, info['shape']))})  {axes}"
    if info["shape_min"] is not None:
        parts = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in zip(info["shape_min"], info["shape_max"])]
        return f"({', '.join(parts)})  {axes}, sizes vary"
    return "-"


def _classes_text(info: dict) -> str:
    k, names = info["n_classes"], info["classes"]
    if k is None:
        return "-"
    if isinstance(k, list):
        return f"varies: {', '.join(map(str, k))}"
    if not names:
        return f"K={k} (no class names)"
    shown = ", ".join(map(str, names[:12])) + (f", ... ({len(names)} names)" if len(names) > 12 else "")
    return f"K={k}: {shown}"


def _complete_text(info: dict) -> str:
    if info["complete"] is True:
        return "yes" + (f" (written by {info['writer']})" if info["writer"] else "")
    if info["complete"] is False:
        return "NO: " + (info["incomplete_reason"] or "its writer never finished (the process stopped before close())")
    return "unknown (not written by segaudit)"


def _folds_text(info: dict) -> str:
    if not info.get("folds_recorded"):
        return "not recorded"
    counts = ", ".join(f"{fold}: {n}" for fold, n in info["fold_images"].items())
    text = f"recorded for {info['folds_recorded']} of {info['images']} images (fold: images {counts})"
    if info.get("folds_check"):
        text += f"; checked against {info['folds_table']}: {info['folds_check']}"
    return text


def format_info(info: dict) -> str:
    """``segaudit info``'s text: one ``name  value`` line per property."""
    on_disk, stored = info["bytes_on_disk"], info["bytes_stored"]
    size = human_bytes(on_disk)
    if stored:
        size += f" (uncompressed {human_bytes(stored)}, ratio {stored / max(on_disk, 1):.2f})"
    chunks = "-"
    if info["chunks"] is not None:
        chunks = f"({', '.join(map(str, info['chunks']))}) = {human_bytes(info['chunk_bytes'])}"
        if info["chunks_vary"]:
            chunks += " (most arrays; others differ)"
        if info["shards"]:
            chunks += f", in shards of ({', '.join(map(str, info['shards']))})"
    dtype = info["dtype"] if not isinstance(info["dtype"], list) else "mixed: " + ", ".join(info["dtype"])
    rows = [
        ("store", f"{info['path']} (zarr format {info['zarr_format']})"),
        ("layout", info["layout"]),
        ("images", str(info["images"]) + (f" ({info['volumes']} volumes)" if info.get("volumes") else "")),
        ("classes", _classes_text(info)),
        ("shape", _shape_text(info)),
        ("dtype", dtype or "-"),
        ("chunks", chunks),
        ("codec", info["codec"] or "-"),
        ("size on disk", size),
        ("kind", str(info["kind"])),
        ("channels_last", "true" if info["channels_last"] is True else "false"),
        ("complete", _complete_text(info)),
        ("folds", _folds_text(info)),
        ("readable", "yes" if info["readable"] else f"no: {info['problem']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows) + "\n"
