"""Uncompressed chunks of a local zarr array, read straight from their files.

zarr-python 3 reads every chunk through its one event-loop thread: the chunk's bytes are
read on a helper thread, then copied into the output array on the loop thread. For an
uncompressed store in the page cache that second copy is most of the work, and it is
serial: with two scoring threads, the loop thread was the busiest thread of the run
(docs/performance.md, issue 19's profile), so a second core barely helped.

:class:`ChunkFiles` reads the same bytes without the loop: each chunk file is read with
one ``preadv`` into the output array itself (when the chunk lies whole inside the
selection and its rows are contiguous there), on the calling thread, with the GIL
released. It applies only where the stored bytes are the array's bytes, so the values
are those zarr would return:

- a local store (:class:`zarr.storage.LocalStore`), a regular chunk grid;
- zarr format 3 with the ``bytes`` codec alone, in native byte order; or format 2 with no
  compressor, no filters, C order, native byte order;
- chunk files of exactly the chunk's size (edge chunks are stored whole).

Anything else (compression, sharding, a remote store, a file of the wrong size) is read by
zarr as before: :meth:`ChunkFiles.of` returns None, or :meth:`ChunkFiles.read` returns None
for that one read. A chunk with no file holds the fill value, as in zarr.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np


class ChunkFiles:
    """Direct reads of one uncompressed array's chunks. Use :meth:`of` to make one."""

    def __init__(self, directory: Path, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: np.dtype,
                 fill_value, encode_key):
        self.directory = directory
        self.shape = shape
        self.chunks = chunks
        self.dtype = dtype
        self.fill_value = fill_value
        self._encode_key = encode_key
        self._chunk_bytes = int(np.prod(chunks)) * dtype.itemsize

    @classmethod
    def of(cls, array) -> ChunkFiles | None:
        """A direct reader of ``array`` (a :class:`zarr.Array`), or None where zarr must read it."""
        try:
            from zarr.storage import LocalStore

            store_path = array.store_path
            if not isinstance(store_path.store, LocalStore):
                return None
            metadata = array.metadata
            dtype = np.dtype(array.dtype)
            if dtype.hasobject or not (dtype.isnative or dtype.itemsize == 1):
                return None
            if metadata.zarr_format == 3:
                from zarr.codecs import BytesCodec
                from zarr.core.chunk_grids import RegularChunkGrid

                codecs = tuple(metadata.codecs)
                if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
                    return None
                endian = codecs[0].endian
                if dtype.itemsize > 1 and (endian is None or endian.value != sys.byteorder):
                    return None
                if not isinstance(metadata.chunk_grid, RegularChunkGrid):
                    return None
                chunks = tuple(metadata.chunk_grid.chunk_shape)
            elif metadata.zarr_format == 2:
                if metadata.compressor is not None or metadata.filters or metadata.order != "C":
                    return None
                chunks = tuple(metadata.chunks)
            else:
                return None
            shape = tuple(array.shape)
            if len(chunks) != len(shape) or not all(isinstance(c, int) and c >= 1 for c in chunks):
                return None
            fill = np.asarray(metadata.fill_value if metadata.fill_value is not None else 0).astype(dtype)
            directory = Path(store_path.store.root) / store_path.path
            return cls(directory, shape, chunks, dtype, fill, metadata.encode_chunk_key)
        except Exception:  # noqa: BLE001 (a zarr internal we do not recognise: let zarr read it)
            return None

    def read(self, selection: tuple[slice, ...]) -> np.ndarray | None:
        """``array[selection]`` (one step-1 slice per axis), or None if a chunk file is not as expected."""
        bounds = [s.indices(n) for s, n in zip(selection, self.shape)]
        if any(step != 1 for _, _, step in bounds):
            return None
        bounds = [(start, max(start, stop)) for start, stop, _ in bounds]
        out = np.empty(tuple(stop - start for start, stop in bounds), self.dtype)
        if out.size == 0:
            return out
        ranges = [range(start // c, -(-stop // c)) for (start, stop), c in zip(bounds, self.chunks)]
        for coords in itertools.product(*ranges):
            # The chunk's part of the selection, in chunk and in output coordinates.
            inside, target = [], []
            for (start, stop), c, i in zip(bounds, self.chunks, coords):
                lo, hi = max(start, i * c), min(stop, (i + 1) * c)
                inside.append(slice(lo - i * c, hi - i * c))
                target.append(slice(lo - start, hi - start))
            view = out[tuple(target)]
            if not self._read_chunk(coords, tuple(inside), view):
                return None
        return out

    def _read_chunk(self, coords: tuple[int, ...], inside: tuple[slice, ...], view: np.ndarray) -> bool:
        path = self.directory / self._encode_key(coords)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            view[...] = self.fill_value
            return True
        except OSError:
            return False
        try:
            if os.fstat(fd).st_size != self._chunk_bytes:
                return False
            whole = all(s.stop - s.start == c for s, c in zip(inside, self.chunks))
            buffers = _contiguous_parts(view) if whole else None
            if buffers is not None:
                return _read_into(fd, buffers, self._chunk_bytes)
            chunk = np.empty(self.chunks, self.dtype)
            if not _read_into(fd, [memoryview(chunk).cast("B")], self._chunk_bytes):
                return False
            view[...] = chunk[inside]
            return True
        finally:
            os.close(fd)


def _contiguous_parts(view: np.ndarray) -> list[memoryview] | None:
    """``view``'s memory as byte buffers in C order, if it is one piece or one piece per leading index."""
    if view.flags.c_contiguous:
        return [memoryview(view).cast("B")]
    if view.ndim > 1 and view[0].flags.c_contiguous and len(view) <= 1024:  # IOV_MAX is 1024 on Linux
        return [memoryview(part).cast("B") for part in view]
    return None


def _read_into(fd: int, buffers: list[memoryview], size: int) -> bool:
    """Fill ``buffers`` from the start of ``fd``; False if the file ends first."""
    offset = 0
    while buffers:
        n = os.preadv(fd, buffers, offset)
        if n <= 0:
            return False
        offset += n
        while buffers and n >= len(buffers[0]):
            n -= len(buffers[0])
            buffers = buffers[1:]
        if buffers and n:
            buffers = [buffers[0][n:]] + buffers[1:]
    return offset == size
