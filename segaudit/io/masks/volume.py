"""Volume masks: NIfTI (``.nii``, ``.nii.gz``, with nibabel) and ``.npy``/``.npz`` arrays, read
by :mod:`segaudit.io.volumes`. A (Z, Y, X) volume travels as its tall 2-D image of Z * Y rows;
a 2-D ``.npy``/``.npz`` array is an image like any other."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import volumes
from .base import MaskFile, MaskFormat, Palette, file_name


class VolumeFormat(MaskFormat):
    name = "volume"
    label = "volume"
    extensions = volumes.VOLUME_EXTS
    remote = False  # nibabel and numpy read local files

    def check_reader(self, paths: Sequence[Path | str]) -> None:
        nifti = next((p for p in paths if volumes.is_nifti(p)), None)
        if nifti is not None:
            volumes.require_nibabel(nifti)

    def shape(self, mask: MaskFile, palette: Palette | None) -> tuple[int, int]:
        shape = volumes.read_header(mask.path).shape
        return (shape[0] * shape[1], shape[2]) if len(shape) == 3 else (shape[0], shape[1])

    def read(self, mask: MaskFile, palette: Palette | None) -> np.ndarray:
        labels = volumes.read_volume_mask(mask.path)
        if labels.ndim == 3:
            labels = labels.reshape(-1, labels.shape[2])  # the tall image: slice after slice
        return labels

    def encode_like(self, mask: MaskFile, old: np.ndarray, new: np.ndarray, palette: Palette | None) -> bytes:
        shape = volumes.read_header(mask.path).shape
        if new.size == math.prod(shape):  # else encode_volume_like says the shapes differ
            new = new.reshape(shape)
        return volumes.encode_volume_like(mask.path, new)

    def suffix(self, mask: MaskFile) -> str:
        return volumes.volume_extension(file_name(mask.path))

    def volume_header(self, mask: MaskFile) -> volumes.VolumeHeader | None:
        header = volumes.read_header(mask.path)
        return header if header.is_volume else None

    # A volume's issue mask keeps the scan's geometry (NIfTI, so viewers overlay it) or is a
    # .npy; a 2-D array's is a PNG like any image's.
    def flags_suffix(self, mask: MaskFile) -> str:
        if self.volume_header(mask) is None:
            return super().flags_suffix(mask)
        return volumes.flag_volume_suffix(mask.path)

    def encode_flags(self, mask: MaskFile, flags: np.ndarray) -> bytes:
        header = self.volume_header(mask)
        if header is None:
            return super().encode_flags(mask, flags)
        return volumes.encode_flag_volume(mask.path, flags.reshape(header.shape))


FORMAT = VolumeFormat()
