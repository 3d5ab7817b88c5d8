"""Volumes: 3-D masks (NIfTI, ``.npy``/``.npz``) and nnU-Net's saved probabilities.

A volume is one image. Its voxels are ordered (Z, Y, X), slices first, as SimpleITK and
nnU-Net order them: a NIfTI file's array (nibabel's voxel axes i, j, k) is transposed, so
slice z is the third voxel axis k. Everything above the input layer sees a volume as a
"tall" 2-D image of Z * Y rows and X columns (slice z is rows z*Y .. z*Y + Y - 1), plus,
where it matters (components, pooling, the worst slice), the slice height Y.

Spacing and orientation are read and kept (the mask's affine from its NIfTI header, the
prediction's from nnU-Net's ``.pkl`` when ``pack`` finds one), compared when both are
known, and never used in a score: scores work in voxels.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, one_line

#: Mask file names read as volumes (``.npy``/``.npz`` may also hold a 2-D mask).
NIFTI_EXTS = (".nii.gz", ".nii")
ARRAY_EXTS = (".npy", ".npz")
VOLUME_EXTS = (*NIFTI_EXTS, *ARRAY_EXTS)
#: Names looked up in a mask ``.npz`` that holds several arrays.
NPZ_MASK_KEYS = ("labels", "seg", "mask")
#: How close two affines must be (mm) to be the same grid.
AFFINE_TOLERANCE = 1e-3
_INT32_MAX = 2**31 - 1
#: RAS (NIfTI, nibabel) from LPS (ITK, nnU-Net's SimpleITK properties).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def volume_extension(name: str) -> str | None:
    """The volume extension ``name`` ends with (lower case, ``.nii.gz`` whole), or None."""
    lower = name.lower()
    return next((ext for ext in VOLUME_EXTS if lower.endswith(ext)), None)


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_EXTS)


@dataclass(frozen=True)
class VolumeHeader:
    """What a mask file's header says: its array shape ((Z, Y, X), or (H, W) for a 2-D
    array file) and, for NIfTI, its affine (RAS, voxel axes i, j, k = X, Y, Z)."""

    shape: tuple[int, ...]
    affine: np.ndarray | None = None

    @property
    def is_volume(self) -> bool:
        return len(self.shape) == 3

    @property
    def spacing(self) -> tuple[float, ...] | None:
        """Voxel size along (Z, Y, X), from the affine."""
        if self.affine is None:
            return None
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0)[::-1])


def require_nibabel(path: Path):
    try:
        import nibabel
    except ImportError:
        raise InputError(f"{path}: reading NIfTI masks needs nibabel: pip install 'segaudit[nifti]'") from None
    return nibabel


def _load_nifti(path: Path):
    nibabel = require_nibabel(path)
    try:
        return nibabel.load(str(path))
    except Exception as exc:  # ImageFileError, OSError, gzip and header errors
        raise InputError(f"cannot read mask {path}: {one_line(exc, type(exc).__name__)}") from None


def _nifti_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(Z, Y, X) of a NIfTI of voxel shape (X, Y, Z); InputError unless 3-D."""
    if len(shape) != 3:
        extra = " (a 4-D NIfTI holds several volumes or channels: a mask is one 3-D volume of class values)" \
            if len(shape) == 4 else ""
        raise InputError(f"{path}: NIfTI mask must be a 3-D volume, found shape {shape}{extra}")
    return shape[2], shape[1], shape[0]


def _npz_member(path: Path, names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    for key in NPZ_MASK_KEYS:
        if key in names:
            return key
    listed = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "") if names else "no arrays"
    raise InputError(f"{path}: holds {listed}; save one array, or name it one of {', '.join(NPZ_MASK_KEYS)}")


def _array_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy``, or of the mask array of an ``.npz``, from headers alone."""
    try:
        if path.suffix.lower() == ".npz":
            with zipfile.ZipFile(path) as archive:
                names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
                member = _npz_member(path, names)
                with archive.open(member + ".npy") as stream:
                    return read_npy_header(stream)
        with open(path, "rb") as stream:
            return read_npy_header(stream)
    except InputError:
        raise
    except Exception as exc:  # OSError, zipfile.BadZipFile, ValueError (bad header)
        raise InputError(f"cannot read mask {path}: {one_line(exc, type(exc).__name__)}") from None


def read_npy_header(stream) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an open ``.npy`` stream's header (the data is not read)."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    return tuple(shape), np.dtype(dtype)


def _check_array_mask(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) not in (2, 3):
        raise InputError(f"{path}: mask array must be (H, W) or a (Z, Y, X) volume, found shape {shape}")
    if not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise InputError(f"{path}: mask array must hold integer class values, found dtype {dtype}")
    if 0 in shape:
        raise InputError(f"{path}: empty mask, shape {shape}")


def read_header(path: str | Path) -> VolumeHeader:
    """A NIfTI or ``.npy``/``.npz`` mask's shape (and NIfTI affine) from its header.

    Parameters
    ----------
    path : str or Path
        The mask file.

    Returns
    -------
    VolumeHeader
        ``shape`` is (Z, Y, X) for a volume (a NIfTI file's voxel axes reversed), or (H, W)
        for a 2-D array. InputError, one line naming the file, for an unreadable file, a
        NIfTI that is not 3-D, an array that is not 2-D or 3-D integer.
    """
    path = Path(path)
    if is_nifti(path):
        image = _load_nifti(path)
        shape = _nifti_shape(path, tuple(int(n) for n in image.shape))
        dtype = image.get_data_dtype()
        if 0 in shape:
            raise InputError(f"{path}: empty mask, shape {shape}")
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise InputError(f"{path}: NIfTI mask must hold class values, found dtype {dtype}")
        return VolumeHeader(shape, np.asarray(image.affine, np.float64))
    shape, dtype = _array_header(path)
    _check_array_mask(path, shape, dtype)
    return VolumeHeader(shape)


def _class_values(path: Path, array: np.ndarray) -> np.ndarray:
    """int32 class values of a decoded mask; InputError for fractions, negatives, overflow."""
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InputError(f"{path}: non-finite value in the mask (class values must be whole numbers)")
        fractional = array != np.round(array)
        if fractional.any():
            value = float(array[fractional].flat[0])
            raise InputError(f"{path}: mask value {value:g} is not a whole number "
                             f"({int(fractional.sum())} voxels; class values must be integers)")
    if array.size and array.dtype != np.bool_:
        low, high = array.min(), array.max()
        if low < 0:
            raise InputError(f"{path}: negative class value {low:g} in {int((array < 0).sum())} voxels")
        if high > _INT32_MAX:
            raise InputError(f"{path}: class value {high:g} is larger than {_INT32_MAX}")
    return array.astype(np.int32, copy=False)


def read_volume_mask(path: str | Path) -> np.ndarray:
    """Decode a NIfTI or ``.npy``/``.npz`` mask to int32 class values.

    Parameters
    ----------
    path : str or Path
        The mask file.

    Returns
    -------
    numpy.ndarray
        C-contiguous int32, (Z, Y, X) for a volume (NIfTI voxel axes reversed) or (H, W).
        A NIfTI's scaling (``scl_slope``) is applied; values must then be whole numbers
        >= 0. InputError, one line naming the file, otherwise.
    """
    path = Path(path)
    header = read_header(path)
    try:
        if is_nifti(path):
            array = np.asanyarray(_load_nifti(path).dataobj)
            array = np.asarray(array).transpose(2, 1, 0)
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                array = archive[_npz_member(path, list(archive.files))]
        else:
            array = np.load(path, allow_pickle=False)
    except InputError:
        raise
    except Exception as exc:  # truncated gzip, zlib errors, bad array data
        raise InputError(f"cannot read mask {path}: {one_line(exc, type(exc).__name__)}") from None
    if tuple(array.shape) != header.shape:  # a file changed between the header and the data
        raise InputError(f"{path}: mask data has shape {array.shape}, its header says {header.shape}")
    return np.ascontiguousarray(_class_values(path, array))


def _nifti_like(path: Path, volume: np.ndarray, dtype=None) -> bytes:
    """A NIfTI file's bytes with ``path``'s affine and header holding ``volume`` (Z, Y, X), in
    ``dtype`` (default: the source's), unscaled, gzipped like the source."""
    nibabel = require_nibabel(path)
    source = _load_nifti(path)
    dtype = source.get_data_dtype() if dtype is None else np.dtype(dtype)
    image = nibabel.Nifti1Image(volume.transpose(2, 1, 0).astype(dtype), source.affine, source.header)
    image.set_data_dtype(dtype)
    image.header.set_slope_inter(1, 0)  # the values as they are, whatever the source's scaling
    data = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        import gzip

        data = gzip.compress(data, mtime=0)
    return data


def encode_volume_like(path: str | Path, new: np.ndarray) -> bytes:
    """The bytes of a mask file like ``path`` (NIfTI with its affine and header, ``.npy``, or
    ``.npz`` under the same key) holding ``new``, (Z, Y, X) class values in the source's dtype."""
    import io as _io

    path = Path(path)
    header = read_header(path)
    if tuple(new.shape) != header.shape:
        raise InputError(f"{path}: a mask of shape {new.shape} cannot replace its {header.shape}")
    if is_nifti(path):
        return _nifti_like(path, new)
    buffer = _io.BytesIO()
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            key = _npz_member(path, list(archive.files))
            dtype = archive[key].dtype
        np.savez_compressed(buffer, **{key: new.astype(dtype)})
    else:
        dtype = np.load(path, mmap_mode="r", allow_pickle=False).dtype
        np.save(buffer, new.astype(dtype))
    return buffer.getvalue()


def flag_volume_suffix(path: str | Path) -> str:
    """The file extension of a volume's issue mask beside a mask like ``path``: the NIfTI one
    (``.nii.gz`` or ``.nii``) for a NIfTI mask, so that viewers overlay it on the scan; ``.npy``
    otherwise."""
    name = str(path).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else ".nii" if name.endswith(".nii") else ".npy"


def encode_flag_volume(path: str | Path, flags: np.ndarray) -> bytes:
    """The bytes of a volume's issue mask, ``flags`` (Z, Y, X) uint8 (0 fine, 255 flagged), in
    the format :func:`flag_volume_suffix` names: for a NIfTI mask a NIfTI image with the
    mask's affine and header (as uint8, unscaled), else a ``.npy`` array."""
    import io as _io

    path = Path(path)
    flags = np.asarray(flags, np.uint8)
    if is_nifti(path):
        return _nifti_like(path, flags, np.uint8)
    buffer = _io.BytesIO()
    np.save(buffer, flags, allow_pickle=False)
    return buffer.getvalue()


# --- predictions ----------------------------------------------------------------------


class _PropertiesUnpickler(pickle.Unpickler):
    """Unpickles nnU-Net's ``.pkl`` properties: plain containers and numpy values, nothing else."""

    _ALLOWED = {
        ("numpy", "dtype"), ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
        ("builtins", "slice"), ("builtins", "complex"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def nnunet_properties(path: str | Path) -> dict:
    """The geometry in an nnU-Net ``.pkl`` properties file, for the store's attributes.

    Parameters
    ----------
    path : str or Path
        The ``case_xxx.pkl`` written beside ``case_xxx.npz`` by ``nnUNetv2_predict
        --save_probabilities``. Only containers and numpy values are unpickled.

    Returns
    -------
    dict
        ``spacing`` (Z, Y, X) and, when the file has SimpleITK's geometry (``sitk_stuff``),
        ``affine``: the 4x4 RAS affine of voxel axes (X, Y, Z), as a NIfTI header has it.
        InputError for an unreadable file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            properties = _PropertiesUnpickler(io.BytesIO(stream.read())).load()
    except Exception as exc:  # OSError, UnpicklingError, EOFError, ...
        raise InputError(f"cannot read nnU-Net properties {path}: {one_line(exc, type(exc).__name__)}") from None
    if not isinstance(properties, dict):
        raise InputError(f"{path}: nnU-Net properties must be a dict, found {type(properties).__name__}")
    found: dict = {}
    try:
        itk = properties.get("sitk_stuff")
        if isinstance(itk, dict) and {"spacing", "origin", "direction"} <= itk.keys():
            spacing = np.asarray(itk["spacing"], np.float64).reshape(3)  # (x, y, z)
            origin = np.asarray(itk["origin"], np.float64).reshape(3)
            direction = np.asarray(itk["direction"], np.float64).reshape(3, 3)
            affine = np.eye(4)
            affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(spacing)
            affine[:3, 3] = _LPS_TO_RAS @ origin
            found["affine"] = affine.tolist()
            found["spacing"] = spacing[::-1].tolist()
        elif "spacing" in properties:
            found["spacing"] = np.asarray(properties["spacing"], np.float64).reshape(3).tolist()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed nnU-Net geometry: {one_line(exc)}") from None
    return found


def check_same_grid(where: str, mask: VolumeHeader, attrs: dict) -> None:
    """InputError when a volume's mask and prediction disagree on the voxel grid.

    ``attrs``: the prediction array's attributes (``affine``, ``spacing`` as ``pack``
    stores them); what either side lacks is not compared.
    """
    if mask.affine is None:
        return
    affine = attrs.get("affine")
    if affine is not None:
        theirs = np.asarray(affine, np.float64)
        if theirs.shape == (4, 4) and not np.allclose(mask.affine, theirs, rtol=0, atol=AFFINE_TOLERANCE):
            difference = float(np.abs(mask.affine - theirs).max())
            raise InputError(f"{where}: the mask's affine and its prediction's differ (by up to {difference:.4g}: "
                             "another orientation, origin or spacing; resample one onto the other's grid)")
        return
    spacing = attrs.get("spacing")
    if spacing is not None and not np.allclose(mask.spacing, np.asarray(spacing, np.float64), rtol=1e-4,
                                               atol=AFFINE_TOLERANCE):
        mine = "x".join(f"{v:g}" for v in mask.spacing)
        theirs = "x".join(f"{float(v):g}" for v in spacing)
        raise InputError(f"{where}: the mask's voxel spacing {mine} (ZxYxX) differs from its prediction's {theirs}")
