"""A dataset: annotation masks paired with their predictions, checked and ready to read.

Every command that reads masks and predictions opens them here, so pairing, size checks,
label validation, the ignore indices and the decoding of stored values are the same
everywhere. What to accumulate (which methods) is the engine's business, not the dataset's.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..io import masks as masks_io
from ..io import remote
from ..io.label_maps import LabelLookup, load_label_map
from ..io.volumes import check_same_grid
from ..errors import InputError, one_line
from ..results import InputSpec
from .kernel import (FLOAT, HALF, MAX_CLASSES, QUANTISED, BadProbabilities, Decoding, ImageStats, KernelConfig,
                     accumulate)
from ..io.predictions import PredictionStore, open_predictions, sum_hint
from ..io.predictions import decoding as lookup_table

DEFAULT_IGNORE_INDEX = (255,)


@dataclass(frozen=True)
class Remedy:
    """Advice that names an option: ``api`` in the Python API's words (``logits=True``),
    ``cli`` in the command line's (``--logits``; None: the same words)."""

    api: str
    cli: str | None = None


@dataclass(frozen=True)
class Remedies:
    """What an error about a dataset's predictions advises, worded for whoever opened it:
    a store (the CLI or :func:`segaudit.score`), arrays given to
    :func:`segaudit.score_arrays`, or cleanlab's drop-ins (which take no such options)."""

    logits: Remedy  # values that are not probabilities (most often logits)
    channels_last: Remedy  # an (H, W, K) array read as (K, H, W)


#: A store's: the Python API's argument, or the command line's flag.
STORE_REMEDIES = Remedies(
    logits=Remedy("if the store holds logits, pass logits=True", cli="if the store holds logits, pass --logits"),
    channels_last=Remedy("pass channels_last=True", cli="pass --channels-last / channels_last=True"),
)


@dataclass
class Dataset:
    """Masks paired with predictions. Use :func:`open_dataset` to make one."""

    pairs: list[tuple[masks_io.MaskFile, str]]  # (mask, image id), sorted by id
    store: PredictionStore
    decoding: Decoding
    ignore: tuple[int, ...]
    colour_map: dict | None
    options: dict  # the inputs, as recorded in the run record
    skipped_masks: list[str] = field(default_factory=list)  # masks with no prediction
    skipped_predictions: list[str] = field(default_factory=list)  # predictions with no mask
    label_map: LabelLookup | None = None  # --label-map, checked against K and the ignore indices
    remedies: Remedies = STORE_REMEDIES  # how errors about the predictions advise their caller
    spec: InputSpec | None = None  # the inputs it was opened from, resolved (None: arrays in memory)

    def read_labels(self, mask: masks_io.MaskFile) -> np.ndarray:
        """The mask's int32 labels, every value a class or an ignore index."""
        labels = masks_io.read_mask(mask, self.colour_map, self.label_map)
        if self.label_map is None:  # a label map's classes were checked when it was opened
            check_labels(labels, self.store.n_classes, self.ignore, str(mask.path), hint=LABEL_MAP_HINT)
        return labels

    def read_block(self, image_id: str, start: int, stop: int) -> np.ndarray:
        """Stored prediction values of rows [start, stop), as [class, row, column]."""
        try:
            return self.store.read_rows(image_id, start, stop)
        except Exception as exc:  # a corrupt or unreadable chunk: zarr and codecs raise many types
            problem = one_line(exc, "no details")
            raise InputError(
                f"{self.store.path}/{image_id}: cannot read rows {start}-{stop}: {type(exc).__name__}: {problem}"
            ) from None

    def slice_rows(self, image_id: str) -> int | None:
        """Rows per slice of a volume's tall image (its Y), or None for a 2-D image."""
        return self.store.slice_rows(image_id)

    def pixel_maps(self, mask: masks_io.MaskFile, image_id: str, rows: tuple[int, int] | None = None):
        """One image at full resolution: labels, s per pixel (NaN where ignored), argmax.

        Returns ``(labels, s, predicted, stats)``; memory is one image's maps, the
        predictions are streamed in row blocks as for scoring. ``rows``: only rows
        [start, stop) (a volume's slice: its rows of the tall image), read alone.
        """
        labels = self.read_labels(mask)
        blocks = self.store.row_blocks(image_id)
        if rows is not None:
            labels = labels[rows[0]:rows[1]]
            blocks = [rows]
        s = np.empty(labels.shape)
        predicted = np.empty(labels.shape, np.int32)
        stats = ImageStats(self.store.n_classes, image_pixels=labels.size)
        config = KernelConfig(self.decoding)
        first = 0 if rows is None else rows[0]
        for start, stop in blocks:
            try:
                accumulate(stats, self.read_block(image_id, start, stop), labels[start - first:stop - first], config,
                           row_offset=start, s_out=s[start - first:stop - first],
                           pred_out=predicted[start - first:stop - first])
            except BadProbabilities as exc:
                raise self.probabilities_error(image_id, exc) from None
        return labels, s, predicted, stats

    def probabilities_error(self, image_id: str, exc: BadProbabilities) -> InputError:
        """The InputError for an image whose stored values are not usable probabilities,
        advising logits (:attr:`remedies`, in the caller's words), or something better
        when the values say more (uint8 values cast to float, a channels-last array read
        as channels-first)."""
        message = f"{self.store.path}/{image_id}: {exc}"
        if not exc.logits_may_help:
            return InputError(message)
        advice = self.remedies.logits
        if self.decoding.mode == FLOAT:
            try:
                rows = np.asarray(self.read_block(image_id, exc.row, exc.row + 1))
                total = float(rows[:, 0, exc.col].sum(dtype=np.float64))
            except Exception:  # noqa: BLE001 (a hint is a nicety: keep the original error)
                rows = None
            if rows is not None and math.isfinite(total):
                turn = self.remedies.channels_last
                hint = sum_hint(total, self.store.n_classes, rows, turn.api)
                if hint:
                    advice = Remedy(hint, None if turn.cli is None else
                                    sum_hint(total, self.store.n_classes, rows, turn.cli))
        return InputError(f"{message} ({advice.api})",
                          cli=None if advice.cli is None else f"{message} ({advice.cli})")


def resolve_ignore(ignore_index: Iterable[int] | None, n_classes: int) -> tuple[int, ...]:
    """The ignore indices in force; the default 255 must not hide a real class."""
    if ignore_index is None:
        if n_classes > DEFAULT_IGNORE_INDEX[0]:
            problem = f"the predictions have K={n_classes} classes, so the default ignore index 255 is a real class"
            raise InputError(f"{problem}; pass ignore_index=N for your unlabeled value, or ignore_index=()",
                             cli=f"{problem}; pass --ignore-index N for your unlabeled value, or --no-ignore")
        return DEFAULT_IGNORE_INDEX
    return check_ignore(ignore_index)


def check_ignore(ignore_index: int | Iterable[int] | None) -> tuple[int, ...]:
    """Given ignore indices (one int, an iterable of ints, or None for none), sorted and
    without repeats; InputError for a negative or non-integer one."""
    if ignore_index is None:
        return ()
    if isinstance(ignore_index, (int, np.integer)) and not isinstance(ignore_index, bool):
        ignore_index = (ignore_index,)
    try:
        given = list(ignore_index)
    except TypeError:
        raise InputError(f"ignore_index must be an int or an iterable of ints, got {ignore_index!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in given):
        raise InputError(f"ignore_index must be an int or an iterable of ints, got {ignore_index!r}")
    values = tuple(sorted({int(v) for v in given}))
    if any(v < 0 for v in values):
        raise InputError(f"ignore indices must be >= 0, got {values}")
    return values


def make_decoding(store_dtype: np.dtype, n_classes: int, ignore: tuple[int, ...], logits: bool,
                  sum_tol: float) -> Decoding:
    """How the kernel reads a store of ``store_dtype`` with K = ``n_classes`` and these ignore indices."""
    if n_classes > MAX_CLASSES:
        raise InputError(f"K={n_classes} classes: segaudit supports at most {MAX_CLASSES}")
    ignore_lut = np.zeros(n_classes, np.bool_)
    for value in ignore:
        if value < n_classes:
            ignore_lut[value] = True
    lut, _ = lookup_table(store_dtype)
    store_dtype = np.dtype(store_dtype)
    mode = HALF if store_dtype == np.float16 else QUANTISED if store_dtype.kind == "u" else FLOAT
    scale = 1.0 / np.iinfo(store_dtype).max if mode == QUANTISED else 1.0
    return Decoding(n_classes=n_classes, lut=lut, mode=mode, scale=scale, ignore=ignore_lut, logits=logits,
                    sum_tol=sum_tol)


LABEL_MAP_HINT = Remedy("masks numbered in another convention? label_map= translates them, see docs/formats.md",
                        cli="masks numbered in another convention? --label-map translates them, see docs/formats.md")


def label_hint(values: list[int]) -> Remedy:
    """What to do about label values >= K: ignore them if they mark void pixels (a dataset's
    void class, often the value just past its classes: CamVid's 11), or translate the masks."""
    they = "they mark" if len(values) > 1 else "it marks"
    api = "ignore_index=" + (str(values[0]) if len(values) == 1 else str(tuple(values[:3])))
    cli = " ".join(f"--ignore-index {v}" for v in values[:3])
    return Remedy(f"if {they} void or unlabeled pixels: {api}; " + LABEL_MAP_HINT.api,
                  cli=f"if {they} void or unlabeled pixels: {cli}; " + LABEL_MAP_HINT.cli)


class LabelValuesError(InputError):
    """A mask holds label values that are no class (>= K) and not ignored; ``values`` are
    those values (ascending), for grouping masks that share them (``segaudit check``)."""

    def __init__(self, message: str, where: str, values: tuple[int, ...], n_classes: int, *, cli: str | None = None):
        super().__init__(message, cli=cli)
        self.where, self.values, self.n_classes = where, values, n_classes


def check_labels(labels: np.ndarray, n_classes: int, ignore: tuple[int, ...], where: str,
                 hint: Remedy | None = None) -> None:
    """Every label value must be a class (< K) or an ignore index; ``hint`` ends the error
    (:data:`LABEL_MAP_HINT`: the error says which ignore index or label map would do).

    Raises
    ------
    LabelValuesError
    """
    if labels.size == 0 or int(labels.max()) < n_classes:
        return
    bad = labels >= n_classes
    if ignore:
        bad &= ~np.isin(labels, ignore)
    if bad.any():
        values, counts = np.unique(labels[bad], return_counts=True)
        listed = ", ".join(f"{v} ({c} px)" for v, c in zip(values[:3].tolist(), counts[:3].tolist()))
        message = (f"{where}: label values not below K={n_classes} and not ignored: {listed}"
                   + (f" and {len(values) - 3} more" if len(values) > 3 else ""))
        if hint is LABEL_MAP_HINT:
            hint = label_hint(values.tolist())
        found = (where, tuple(values.tolist()), n_classes)
        if hint is None:
            raise LabelValuesError(message, *found)
        raise LabelValuesError(f"{message} ({hint.api})", *found,
                               cli=None if hint.cli is None else f"{message} ({hint.cli})")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (no-op elsewhere).

    Row blocks are freed and reallocated by several reader threads (ours and zarr's); each
    thread's arena would otherwise keep its own few blocks, and peak memory would grow with
    the thread count instead of staying at the prefetch depth.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _pair(
    mask_files: list[masks_io.MaskFile], store: PredictionStore, allow_missing: bool, subset: bool = False,
) -> tuple[list[tuple[masks_io.MaskFile, str]], list[str], list[str]]:
    by_id = {m.image_id: m for m in mask_files}
    in_store = set(store.image_ids)
    no_prediction = [i for i in by_id if i not in in_store]
    # Scoring a subset, the other predictions are simply not asked for.
    no_mask = [] if subset else sorted(in_store - by_id.keys())
    if (no_prediction or no_mask) and not allow_missing:
        problems = []
        if no_prediction:
            problems.append(f"{len(no_prediction)} mask(s) with no prediction in {store.path}: "
                            + ", ".join(no_prediction[:3]) + (" ..." if len(no_prediction) > 3 else ""))
        if no_mask:
            problems.append(f"{len(no_mask)} prediction(s) with no mask: "
                            + ", ".join(no_mask[:3]) + (" ..." if len(no_mask) > 3 else ""))
        raise InputError("; ".join(problems) + " (allow_missing=True skips them)",
                         cli="; ".join(problems) + " (--allow-missing skips them)")
    pairs = [(m, m.image_id) for m in mask_files if m.image_id in in_store]
    if not pairs and not subset:
        raise InputError(f"no image id is in both the masks and {store.path}")
    return pairs, no_prediction, no_mask


def check_volume_pair(mask: masks_io.MaskFile, image_id: str, store: PredictionStore) -> None:
    """A volume's mask and prediction must both be volumes of one (Z, Y, X) on one grid
    (the affines, when both are known); InputError, one line, otherwise."""
    header = masks_io.volume_header(mask)
    pred = store.volume_shape(image_id)
    if header is None and pred is None:
        return
    if header is None or pred is None:
        mask_text = "x".join(map(str, header.shape)) + " (ZxYxX) volume" if header else "2-D image"
        pred_text = "x".join(map(str, pred)) + " (ZxYxX) volume" if pred else "2-D image"
        raise InputError(f"{mask.path}: mask is a {mask_text} but its prediction {image_id} is a {pred_text}")
    if tuple(header.shape) != tuple(pred):
        raise InputError(f"{mask.path}: mask is {'x'.join(map(str, header.shape))} (ZxYxX) but its prediction "
                         f"{image_id} is {'x'.join(map(str, pred))}")
    check_same_grid(f"{mask.path}", header, store.volume_attributes(image_id))


def open_dataset(
    masks: str | Path | InputSpec,
    predictions: str | Path | None = None,
    *,
    problems: list[str] | None = None,
    **inputs,
) -> Dataset:
    """Find the masks, open the store, pair them and check sizes (headers only).

    Parameters
    ----------
    masks : str, Path or InputSpec
        The masks (then ``predictions`` and the input keywords ``inputs``, the fields of
        :class:`~segaudit.results.InputSpec`, say the rest), or the whole spec.
    predictions : str or Path, optional
        The prediction store, unless ``masks`` is a spec.
    problems : list of str, optional
        Without it, InputError for any problem that can be seen without decoding masks or
        predictions; with it, an image whose mask cannot be read or whose size differs from
        its prediction's is appended to it instead (and left out of the dataset), so that
        ``segaudit check`` lists every one.
    **inputs
        The input options (as :func:`segaudit.score`'s): ``only`` names the images to use
        (ids or mask paths, see :func:`segaudit.io.subset.resolve_only`);
        ``storage_options``, the fsspec options of masks or predictions given as URLs (a
        dict, or its JSON text), is never recorded.

    Returns
    -------
    Dataset
        With ``spec``, the inputs resolved (what the run record keeps), and ``options``.
    """
    spec = masks if isinstance(masks, InputSpec) else InputSpec(masks, predictions, **inputs)
    if isinstance(masks, InputSpec) and (predictions is not None or inputs):
        raise TypeError("open_dataset: give an InputSpec, or masks, predictions and input keywords, not both")
    limit_malloc_arenas()
    masks, predictions, only, mask_suffix, palette = (spec.masks, spec.predictions, spec.only, spec.mask_suffix,
                                                      spec.palette)
    storage_options = remote.parse_storage_options(spec.storage_options, "storage_options")
    mask_files = masks_io.find_masks(masks, mask_suffix, storage_options)
    deleted: list[str] = []
    if only is not None:
        from ..io.subset import resolve_only

        chosen, deleted = resolve_only(list(only), masks, mask_files, mask_suffix)
        keep = set(chosen)
        mask_files = [m for m in mask_files if m.image_id in keep]
    colour_map = masks_io.load_palette(palette) if palette else None
    label_map = None if spec.label_map is None else load_label_map(spec.label_map)
    store = open_predictions(predictions, classes=None if spec.classes is None else list(spec.classes),
                             logits=spec.logits, channels_last=spec.channels_last,
                             only_ids=None if only is None else [m.image_id for m in mask_files],
                             storage_options=storage_options)
    ignore = resolve_ignore(spec.ignore_index, store.n_classes)
    decoding = make_decoding(store.dtype, store.n_classes, ignore, store.logits, store.sum_tolerance)
    lookup = None if label_map is None else label_map.lookup(store.n_classes, ignore)
    pairs, no_prediction, no_mask = _pair(mask_files, store, spec.allow_missing, subset=only is not None)

    # Cheap checks first (PNG headers and array metadata), so a size mismatch in the
    # last image fails before minutes of scoring.
    checked = []
    for mask, image_id in pairs:
        try:
            mask_hw = masks_io.mask_shape(mask, colour_map)
            pred_hw = store.image_shape(image_id)
            check_volume_pair(mask, image_id, store)
            if tuple(mask_hw) != tuple(pred_hw):
                raise InputError(
                    f"{mask.path}: mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but its prediction "
                    f"{image_id} is {pred_hw[0]}x{pred_hw[1]}"
                )
        except InputError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        checked.append((mask, image_id))
    pairs = checked
    # The spec as it was resolved: what the run record keeps and reopens.
    resolved = replace(
        spec,
        masks=remote.location_text(masks),  # a URL without user, password or query
        predictions=remote.location_text(predictions),
        ignore_index=ignore,
        palette=str(Path(palette).resolve()) if palette else None,
        label_map=None if label_map is None else label_map.record(),
        classes=None if store.classes is None else tuple(store.classes),
        logits=store.logits,
        channels_last=store.channels_last,
        only=None if only is None else tuple(image_id for _, image_id in pairs),
    )
    options = {**resolved.recorded(), "layout": store.layout, "n_classes": store.n_classes, "only_deleted": deleted}
    return Dataset(pairs=pairs, store=store, decoding=decoding, ignore=ignore, colour_map=colour_map,
                   options=options, skipped_masks=no_prediction, skipped_predictions=no_mask, label_map=lookup,
                   spec=resolved)
