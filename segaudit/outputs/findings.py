"""Which pixels are wrong, and which class mix-ups dominate: pixel issue masks and the
class-confusion summary.

Both rest on the flags of confident learning (``clc``): a scoring run finds the exact
selection, and one more pass hands out each image's full-resolution flag map. The store
is read once: the later passes read the cells and the pixels' argmax that the scoring
pass spilled to a temporary cache (and the masks again). Issue masks can instead use the
simple rule s < threshold (two passes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.cells import CellCache
from ..core.kernel import check_pixel_threshold
from ..methods import AUTO
from ..methods.clc import flag_pass
from ..core.dataset import Dataset
from ..errors import InputError
from ..io.files import atomic_write_all, contained_path, refuse_overwriting_inputs, safe_relative_path, staged_directory
from ..io.tables import render
from ..io.masks import encode_flags, flags_suffix
from ..engine import Scoring, scoring
from ..results import CONFUSION_COLUMNS, InputSpec, ScoreRun

ISSUE_METHODS = ("clc", "threshold")


@dataclass(frozen=True)
class Confusion:
    """Flagged pixels annotated ``annotated`` that the model sees as ``predicted``."""

    annotated: int
    predicted: int
    pixels: int
    images: int  # images with at least one such pixel
    share: float  # pixels / all scored pixels annotated ``annotated``


def _flag_maps(run: ScoreRun, engine: Scoring, on_image: Callable, keep: frozenset = frozenset()) -> None:
    """The exact clc flag pass over the dataset of ``run`` (its partitions: here over its
    cell cache, if any; or on a Dask cluster's workers, :func:`flag_maps_part`): each image's
    confusion of flagged pixels and, for the images in ``keep`` only, its flag map (others
    get None), handed to ``on_image(index, image_id, flag_map, confusion)`` in dataset order.
    """
    dataset = engine.dataset
    if run.clc.selection is None:  # nothing flagged anywhere
        for index, (mask, image_id) in enumerate(dataset.pairs):
            on_image(index, image_id, None, None)
        return
    parts = engine.parts
    index = 0

    def add(item):
        nonlocal index
        confusion, packed = item
        flag_map = None
        if packed is not None:
            shape, bits = packed
            flag_map = np.unpackbits(bits, count=math.prod(shape)).reshape(shape)
        on_image(index, dataset.pairs[index][1], flag_map, confusion)
        index += 1

    parts.each("clc: flagging", flag_maps_part, [(run.clc.downsample, run.clc.selection, keep)] * parts.count, add)


def flag_maps_part(dataset: Dataset, first: int, cache: CellCache | None, prefetch: int, done, emit, factor: int,
                   selection, keep: frozenset) -> None:
    """One partition's clc flag maps (a :meth:`Partitions.each` job): per image in order, it
    emits its (annotated, predicted) confusion of flagged pixels and, for the images in
    ``keep``, its flag map as (shape, packed bits); None for the others."""

    def on_image(index, image_id, flag_map, confusion):
        emit((confusion, (flag_map.shape, np.packbits(flag_map)) if image_id in keep else None))

    flag_pass(dataset, factor, selection, prefetch=prefetch, on_image=on_image, cache=cache,
              progress=lambda stage, index, total: done(first + index - 1))


def class_confusions(masks=None, predictions=None, *, downsample: int = 4, prefetch: int = 4, on_progress=None,
                     threads: int | None = None, client=None, partition_size: int | None = None,
                     spec: InputSpec | None = None, calibrate: bool = False, calibration_seed: int = 0,
                     **inputs) -> tuple[list[Confusion], ScoreRun]:
    """Over all clc-flagged pixels: (annotated → predicted) counts, worst first.

    ``inputs`` are :func:`segaudit.score`'s input options (ignore_index, mask_suffix,
    palette, classes, logits, channels_last, allow_missing), or ``spec`` all of them in one
    (:class:`segaudit.InputSpec`). Four passes, one over the
    store (see the module's docstring). ``threads``, ``client`` and ``partition_size``: as
    for :func:`segaudit.score` (on a Dask cluster every pass runs on the workers, the
    same rows result).

    With ``calibrate``, the same pass also runs ``--method auto``'s calibration (errors
    planted into a sample of the masks, seeded by ``calibration_seed``): the run's
    ``calibration`` then says how well each kind of error can be found with this model.
    """
    spec = InputSpec.of(masks, predictions, spec, **inputs)
    with _clc_run(spec, downsample, prefetch, on_progress, threads, client, partition_size,
                  calibration_seed if calibrate else None) as (run, engine):
        n_classes = engine.dataset.store.n_classes
        pixels = np.zeros((n_classes, n_classes), np.int64)
        images = np.zeros((n_classes, n_classes), np.int64)

        def add(index, image_id, flag_map, confusion):
            if confusion is not None:
                pixels[:] += confusion
                images[:] += confusion > 0

        _flag_maps(run, engine, add)
    rows = [
        Confusion(int(a), int(p), int(pixels[a, p]), int(images[a, p]),
                  float(pixels[a, p] / run.class_pixels[a]) if run.class_pixels[a] else math.nan)
        for a, p in zip(*np.nonzero(pixels))
    ]
    rows.sort(key=lambda row: (-row.pixels, row.annotated, row.predicted))
    return rows, run


def confusion_rows(rows: list[Confusion], class_name: Callable[[int], str]) -> list[list]:
    return [[class_name(r.annotated), class_name(r.predicted), r.pixels, r.images, r.share] for r in rows]


def confusions_csv(rows: list[Confusion], class_name: Callable[[int], str]) -> str:
    return render(CONFUSION_COLUMNS, confusion_rows(rows, class_name), "csv")


@contextmanager
def _clc_run(spec: InputSpec, downsample, prefetch, on_progress, threads=None, client=None,
             partition_size=None, calibration_seed: int | None = None) -> Iterator[tuple[ScoreRun, Scoring]]:
    """Score clc (here or on ``client``'s cluster) and keep what the flag maps' pass reads:
    here, a cell cache with the pixels' argmax, removed on exit (without one, too big for
    the disk, the flag maps re-read the store); on a cluster, the partitions. With a
    ``calibration_seed``, auto's calibration too, in the same pass."""
    methods = ("clc",) if calibration_seed is None else ("clc", AUTO)
    with scoring(spec, client, partition_size=partition_size, prefetch=prefetch, on_progress=on_progress) as engine:
        run = engine.score(methods, downsample=downsample, threads=threads, keep_cells=True, cell_pixels=True,
                           calibration_seed=0 if calibration_seed is None else calibration_seed)
        yield run, engine


#: The staging folder of issue masks inside the output directory (this + the process id + ``-`` ...).
STAGING_PREFIX = ".segaudit-issues-"


def write_issue_masks(
    masks=None, predictions=None, out_dir: str | Path | None = None, *, method: str = "clc", top: int | None = None,
    pixel_threshold: float = 0.5, downsample: int = 4, prefetch: int = 4, on_progress=None,
    threads: int | None = None, client=None, partition_size: int | None = None, spec: InputSpec | None = None,
    **inputs,
) -> tuple[list[tuple[str, int]], ScoreRun]:
    """Write a full-resolution PNG (0 = fine, 255 = flagged) per image with flagged pixels.

    With ``top``, only the ``top`` images with the largest flagged fraction (ties by id),
    whether or not they have flagged pixels. Files mirror the mask ids under
    ``out_dir``. Returns the (image id, flagged pixels) written, and the scoring run.
    ``threads``, ``client`` and ``partition_size``: as for :func:`segaudit.score` (on a
    Dask cluster, the scoring and clc's flag maps run on the workers; threshold's maps of
    the chosen images are computed here).
    """
    spec = InputSpec.of(masks, predictions, spec, **inputs)  # as class_confusions
    if out_dir is None:
        raise TypeError("write_issue_masks: give out_dir")
    if method not in ISSUE_METHODS:
        raise InputError(f"unknown issue method {method!r}; choose clc or threshold")
    out_dir = Path(out_dir)
    with ExitStack() as stack:
        if method == "clc":
            # The cache (with the pixels' argmax) stays until the flag maps are written.
            run, engine = stack.enter_context(_clc_run(spec, downsample, prefetch, on_progress, threads, client,
                                                       partition_size))
            flagged = {image_id: int(n) for (_, image_id), n in zip(engine.dataset.pairs, run.clc.flagged)}
        else:
            check_pixel_threshold(pixel_threshold)
            engine = stack.enter_context(scoring(spec, client, partition_size=partition_size, prefetch=prefetch,
                                                 on_progress=on_progress))
            # On a cluster the workers score; the maps of the chosen images are computed here.
            run = engine.score(("cil",), pixel_threshold=pixel_threshold, threads=threads)
            flagged = {r.image_id: r.low_pixels for r in run.results}
        dataset = engine.dataset
        pixels = {r.image_id: r.pixels for r in run.results}
        if top is None:
            chosen = {i for i, n in flagged.items() if n}
        else:
            ranked = sorted(flagged, key=lambda i: (-(flagged[i] / pixels[i]) if pixels[i] else 0.0, i))
            chosen = set(ranked[:top])
        # Each issue mask in its mask's issue-mask format (io.masks.encode_flags).
        sources = {image_id: mask for mask, image_id in dataset.pairs if image_id in chosen}
        targets = {image_id: contained_path(out_dir, safe_relative_path(image_id, flags_suffix(sources[image_id])))
                   for image_id in chosen}
        for target in targets.values():
            refuse_overwriting_inputs({"masks directory": spec.masks, "prediction store": spec.predictions},
                                      {"issue mask": target})
        written: list[tuple[str, int]] = []
        # The masks are written into a staging folder inside out_dir and moved in when every one
        # is complete: an error, SIGINT or SIGTERM mid-pass leaves none of them.
        staged = stack.enter_context(staged_directory(out_dir, STAGING_PREFIX))

        def write(image_id: str, flag_map: np.ndarray | None, shape) -> None:
            target = staged.path(targets[image_id].relative_to(out_dir))
            image = np.zeros(shape, np.uint8) if flag_map is None else flag_map * np.uint8(255)
            atomic_write_all({target: encode_flags(sources[image_id], image)})
            written.append((image_id, int(np.count_nonzero(image))))

        if method == "clc":
            def on_image(index, image_id, flag_map, confusion):
                if image_id in targets:
                    write(image_id, flag_map, dataset.store.image_shape(image_id))

            _flag_maps(run, engine, on_image, frozenset(targets))
        else:
            subset = dataclasses.replace(dataset, pairs=[p for p in dataset.pairs if p[1] in targets])
            for mask, image_id in subset.pairs:
                _, s, _, _ = subset.pixel_maps(mask, image_id)
                write(image_id, (s < pixel_threshold).astype(np.uint8), s.shape)
    written.sort()
    return written, run
