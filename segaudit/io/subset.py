"""``--only``: the images a pull request changed, given as ids or as the mask paths that
``git diff --name-only`` prints."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .masks import MaskFile, mask_extension
from .remote import is_url, redact


def _resolve_remote(entries: list[str], masks_url: str, ids: set[str], suffix: str) -> tuple[list[str], list[str]]:
    """:func:`resolve_only` for masks under a URL: an entry is an image id, a mask path relative
    to the masks URL, or the mask's full URL (a git checkout's paths cannot be matched to it)."""
    chosen: list[str] = []
    unknown: list[str] = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        relative = entry[len(masks_url):].lstrip("/") if entry.startswith(masks_url + "/") else entry
        ext = mask_extension(relative)
        stem = relative[: -len(ext)] if ext else relative
        if ext and suffix and stem.endswith(suffix):
            stem = stem[: -len(suffix)]
        if stem in ids:
            chosen.append(stem)
        else:
            unknown.append(entry)
    if unknown:
        raise InputError(
            f"--only: {len(unknown)} entr{'y' if len(unknown) == 1 else 'ies'} name no mask in {masks_url} "
            "(masks at a URL are chosen by image id or by path relative to the URL, not by a local checkout's paths): "
            + ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        )
    return sorted(set(chosen)), []


def _git_root(directory: Path) -> Path | None:
    for parent in (directory, *directory.parents):
        if (parent / ".git").exists():
            return parent
    return None


def resolve_only(entries: list[str], masks_dir: str | Path, mask_files: list[MaskFile],
                 suffix: str = "") -> tuple[list[str], list[str]]:
    """Image ids for ``entries``, and the entries that name masks no longer on disk.

    An entry is an image id, or a path to a mask (PNG, TIFF, NIfTI, .npy/.npz) relative to the current directory,
    the masks directory or the root of the git repository holding it. A path inside the
    masks directory whose file is gone (a deleted mask) is returned as deleted; anything
    else that names no mask is an InputError.
    """
    ids = {m.image_id for m in mask_files}
    if is_url(masks_dir):
        return _resolve_remote(entries, redact(masks_dir), ids, suffix)
    masks_dir = Path(masks_dir).resolve()
    bases = [Path.cwd(), masks_dir]
    root = _git_root(masks_dir)
    if root is not None:
        bases.append(root)
    chosen: list[str] = []
    deleted: list[str] = []
    unknown: list[str] = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        if entry in ids:
            chosen.append(entry)
            continue
        image_id = None
        for base in bases:
            path = (base / entry).resolve()
            ext = mask_extension(path.name)
            if ext is None or not path.is_relative_to(masks_dir):
                continue
            stem = path.relative_to(masks_dir).as_posix()[: -len(ext)]
            if suffix and stem.endswith(suffix):
                stem = stem[: -len(suffix)]
            if stem in ids:
                image_id = stem
            elif not path.exists():
                image_id = ""  # a deleted mask
            if image_id is not None:
                break
        if image_id:
            chosen.append(image_id)
        elif image_id == "":
            deleted.append(entry)
        else:
            unknown.append(entry)
    if unknown:
        raise InputError(
            f"--only: {len(unknown)} entr{'y' if len(unknown) == 1 else 'ies'} name no mask in {masks_dir}: "
            + ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        )
    return sorted(set(chosen)), deleted
