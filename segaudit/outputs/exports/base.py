"""What every exporter receives: the images chosen for relabeling, one at a time.

An exporter (one module of :mod:`segaudit.outputs.exports` defining ``EXPORTER``) is an
:class:`Exporter`: a name, a default output name and a ``start`` function that gets the
:class:`ExportContext` and returns an :class:`ExportWriter`. The driver
(:func:`segaudit.outputs.exports.export`) hands the writer each chosen image as an
:class:`ExportImage` (its current mask, the proposed fix and its suspect regions with
their pixels) as the pass over the predictions reaches it, then asks for the files to
write, which list the images in ranking order; it writes them atomically. Memory holds
one image's maps plus what the writer keeps (encoded masks).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.regions import Region
from ...errors import InputError


@dataclass(frozen=True)
class ExportContext:
    """What is the same for every image of an export."""

    classes: tuple[str, ...]  # class names, by class index
    ignore: tuple[int, ...]  # mask values that are no class
    image_url: str  # the image reference template: "{id}" is replaced by the image id
    ranking: Path  # the ranking the images come from
    min_score: float  # regions scoring at least this are suspect

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def url(self, image_id: str) -> str:
        """Where the annotation tool finds the image's photo; InputError for a URL whose scheme
        a browser would run or inline (``javascript:``, ``data:`` ...) rather than fetch."""
        url = self.image_url.replace("{id}", image_id)
        check_image_url(url)
        return url

    def class_pixels(self, labels: np.ndarray) -> np.ndarray:
        """True where ``labels`` holds a class (not an ignore value)."""
        known = (labels >= 0) & (labels < self.n_classes)
        for value in self.ignore:
            known &= labels != value
        return known


#: The schemes an image reference may have (none: a path, as Label Studio's local files).
IMAGE_URL_SCHEMES = ("http", "https", "s3", "gs", "azure-blob", "file")
# Browsers drop control characters and spaces before reading a scheme ("java\tscript:").
_BLANKS = re.compile(r"[\x00-\x20\x7f]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def check_image_url(url: str) -> None:
    """InputError unless ``url`` is a path or has one of :data:`IMAGE_URL_SCHEMES` (a one-letter
    scheme is a Windows drive)."""
    found = _SCHEME.match(_BLANKS.sub("", url))
    if found and len(found.group(1)) > 1 and found.group(1).lower() not in IMAGE_URL_SCHEMES:
        raise InputError(f"--image-url gives {url!r}: an image reference must be a path or a "
                         f"{', '.join(s + ':' for s in IMAGE_URL_SCHEMES)} URL, not {found.group(1)}:")


@dataclass
class ExportRegion:
    """A suspect region of an image and its pixels."""

    region: Region
    pixels: np.ndarray  # bool (H, W)
    decision: str = ""  # the reviewer's decision about this region ('fix' or ''), from --decisions


@dataclass
class ExportImage:
    """One image chosen for relabeling."""

    image_id: str
    rank: int  # in the ranking
    score: float  # the ranking's score (NaN: no scored pixel)
    labels: np.ndarray  # int32 (H, W): the current mask's class indices (ignore values kept)
    proposal: np.ndarray  # int32 (H, W): the proposed fix (the current mask where nothing is proposed)
    regions: list[ExportRegion] = field(default_factory=list)  # worst first
    decision: str = ""  # the whole-image decision ('fix' or '')

    @property
    def height(self) -> int:
        return int(self.labels.shape[0])

    @property
    def width(self) -> int:
        return int(self.labels.shape[1])


class ExportWriter:
    """Collects the images of one export and renders its files."""

    def add(self, image: ExportImage) -> None:  # pragma: no cover - every exporter overrides it
        """Take one image (called in dataset order: keep what is needed, encoded, with its rank)."""
        raise NotImplementedError

    def files(self, out: Path) -> dict[Path, str | bytes]:  # pragma: no cover - every exporter overrides it
        """The files to write for output ``out`` (``out`` itself and any beside it), the
        images in ranking order (:attr:`ExportImage.rank`)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Exporter:
    """One export format, found by the registry in :mod:`segaudit.outputs.exports`."""

    name: str  # the --to value
    description: str  # one line, for --help
    default_output: str  # the -o default
    start: Callable[[ExportContext], ExportWriter]
    #: The files written beside ``out`` (a Label Studio labeling config), for the check
    #: against the inputs before anything is read.
    beside: Callable[[Path], list[Path]] = lambda out: []

    def outputs(self, out: Path) -> list[Path]:
        """Every file the export writes for output ``out``."""
        return [out, *self.beside(out)]
