"""What every mask format shares: :class:`MaskFile` (one mask, local or under a URL), the
:class:`MaskFormat` interface each format module implements, and reading a mask's bytes."""

from __future__ import annotations

import io
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import InputError, one_line
from .. import remote

#: RGB colour -> class index (``--palette``, for RGB/RGBA PNG masks).
Palette = dict[tuple[int, int, int], int]

INT32_MAX = 2**31 - 1

#: The first bytes of a remote mask that a header read fetches: a PNG's header (IHDR) is in
#: the first 33, and the palette of a P-mode mask comes before the pixels.
HEADER_BYTES = 1 << 16


@dataclass(frozen=True)
class MaskFile:
    """One mask on disk; ``image_id`` is its '/'-separated relative path without extension.

    A mask under a URL (see :func:`segaudit.io.masks.find_masks`) has its URL as ``path`` (a
    string) and the fsspec filesystem that reads it as ``fs``; a local mask has a Path and no ``fs``.
    """

    image_id: str
    path: Path | str
    fs: object = field(default=None, compare=False, repr=False)
    key: str | None = field(default=None, compare=False, repr=False)  # the path ``fs`` reads


def file_name(path: Path | str) -> str:
    """The file name of a local path or a URL."""
    return path.name if isinstance(path, Path) else posixpath.basename(path)


def source(mask: MaskFile, header_only: bool = False):
    """What Pillow and tifffile open: the local path, or the remote file's bytes (its first
    :data:`HEADER_BYTES` when only its header is read)."""
    if mask.fs is None:
        return mask.path
    try:
        data = mask.fs.cat_file(mask.key, start=0, end=HEADER_BYTES) if header_only else mask.fs.cat_file(mask.key)
    except Exception as exc:  # noqa: BLE001 (each filesystem raises its own types)
        raise remote.remote_error(mask.path, exc, "mask") from None
    return io.BytesIO(data)


def read_bytes(mask: MaskFile) -> bytes:
    """The mask file's bytes, local or remote; InputError, one line, if it cannot be read."""
    if mask.fs is None:
        try:
            return Path(mask.path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read mask {mask.path}: {one_line(exc.strerror or exc)}") from None
    return source(mask).getvalue()


class MaskFormat(ABC):
    """One mask file format: which files it reads and how it reads and writes them.

    A format module (``png.py``, ``tiff.py``, ``volume.py``) defines ``FORMAT``, an instance;
    :data:`segaudit.io.masks.FORMATS` lists them and every reader dispatches on a file's
    extension. Labels travel as 2-D int32 class indices (a volume as its tall image of Z * Y
    rows), so nothing above this package knows the formats.
    """

    #: The format's name ("png", "tiff", "volume").
    name: str
    #: How messages name its files ("PNG", "TIFF", "volume").
    label: str
    #: The file extensions it reads, lower case (``.nii.gz`` whole), in the order they are tried.
    extensions: tuple[str, ...]
    #: Whether masks under a URL are read (through fsspec).
    remote: bool = True

    def check_reader(self, paths: Sequence[Path | str]) -> None:
        """Fail, before any work, when reading ``paths`` (this format's files of a dataset)
        needs an optional package that is missing; one line saying how to install it."""

    @abstractmethod
    def shape(self, mask: MaskFile, palette: Palette | None) -> tuple[int, int]:
        """(height, width) from the header alone (a volume's tall (Z * Y, X)), with the
        checks :meth:`read` makes of the header."""

    @abstractmethod
    def read(self, mask: MaskFile, palette: Palette | None) -> np.ndarray:
        """The mask's class indices: 2-D, C-contiguous int32 (a volume's tall image)."""

    @abstractmethod
    def encode_like(self, mask: MaskFile, old: np.ndarray, new: np.ndarray, palette: Palette | None) -> bytes:
        """The bytes of a file in ``mask``'s own encoding holding ``new`` (its labels as
        :meth:`read` returned them, some changed from ``old``)."""

    def suffix(self, mask: MaskFile) -> str:
        """The extension of a file written by :meth:`encode_like`."""
        return self.extensions[0]

    def encode_flags(self, mask: MaskFile, flags: np.ndarray) -> bytes:
        """The bytes of ``mask``'s issue mask, ``flags`` (its tall 2-D shape, uint8: 0 fine,
        255 flagged): a greyscale PNG, unless the format keeps its own."""
        from .png import encode_grey

        return encode_grey(flags)

    def flags_suffix(self, mask: MaskFile) -> str:
        """The extension of the file :meth:`encode_flags` writes."""
        return ".png"

    def palette(self, mask: MaskFile) -> list[tuple[int, int, int]] | None:
        """The file's own colour table (index = class), if it has one."""
        return None

    def volume_header(self, mask: MaskFile):
        """A volume's :class:`segaudit.io.volumes.VolumeHeader`; None for a 2-D mask."""
        return None
