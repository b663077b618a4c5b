"""Float32 rows kept on disk, so that a layer's activations need not sit in memory.

A :class:`RowFile` is an anonymous temporary file (``tempfile.TemporaryFile``: removed by the OS
when closed or when the process dies; its folder is ``$TMPDIR``) of ``n`` rows of ``dim`` float32
values. Rows are written in batches and read back by range or by index with plain reads, never
mapped, so what was read is the only part resident in the process; the rest lives in the
operating system's page cache, which it can drop. MASC fits and predicts from it one class block or
one batch at a time (``MinimumAngleSubspaceClassifier.fit``/``predict``, ``iter_labellings``).
"""
import os
import shutil
import tempfile

import numpy as np
import torch

from .errors import MASCError

ITEM = 4  # bytes per float32
FLOAT32_MAX = float(np.finfo(np.float32).max)


def temporary_folder():
    """Where temporary files go: ``$TMPDIR`` (or TEMP, TMP), else the system's. A folder named
    there that cannot be written is an error, not silently replaced by another."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        named = os.environ.get(name)
        if named:
            chosen = tempfile.gettempdir()
            if os.path.realpath(chosen) != os.path.realpath(named):
                raise MASCError(f"{name}={named} is not a writable folder (temporary files would "
                                f"silently go to {chosen}); make it writable, point {name} to "
                                f"one, or unset it")
            return chosen
    return tempfile.gettempdir()


class RowFile:
    """``n`` x ``dim`` float32 rows in a temporary file, written as ``rows[i:j] = batch``, read as
    ``rows[i:j]`` or ``rows[index]`` (a tensor of row numbers or a boolean mask): CPU float32
    tensors, like a tensor's rows."""

    def __init__(self, n, dim, folder=None):
        if n < 0 or dim < 1:
            raise MASCError(f"a RowFile needs n >= 0 rows of dim >= 1 values, got {n} x {dim}")
        self.shape = (int(n), int(dim))
        self.device = torch.device("cpu")
        folder = folder or temporary_folder()
        need = n * dim * ITEM
        try:
            free = shutil.disk_usage(folder).free
            if need <= free:
                self._file = tempfile.TemporaryFile(dir=folder, buffering=0)
        except OSError as e:
            raise MASCError(f"cannot make a temporary file in {folder} ({e.strerror or e}): give "
                            f"a folder that exists and can be written (or set TMPDIR to "
                            f"one)") from None
        if need > free:
            raise MASCError(f"{n} x {dim} float32 rows need {need / 2**30:.2f} GiB in {folder}, "
                            f"which has {free / 2**30:.2f} GiB free: free space there or set "
                            f"TMPDIR to a folder on a bigger disk")
        self._file.truncate(need)
        self._written = np.zeros(n, dtype=bool)  # which rows were written

    def __len__(self):
        return self.shape[0]

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __setitem__(self, index, rows):
        """Store ``rows`` (b x dim, finite) as rows ``index`` (a slice of b consecutive rows),
        in float32."""
        start, stop, step = (index.indices(len(self)) if isinstance(index, slice) else
                             (None, None, None))
        rows = torch.as_tensor(rows).detach()
        if (step != 1 or rows.dim() != 2 or rows.shape[1] != self.shape[1]
                or stop - start != len(rows)):
            raise MASCError(f"cannot write rows of shape {tuple(rows.shape)} at rows {index} of "
                            f"a RowFile of shape {self.shape}: give a slice of as many "
                            f"consecutive rows")
        if not torch.isfinite(rows).all():
            raise MASCError(f"rows {start}-{stop - 1} contain NaN or infinite values; MASC needs "
                            f"finite features")
        if len(rows) and rows.abs().max() > FLOAT32_MAX:
            raise MASCError(f"rows {start}-{stop - 1} hold values beyond float32's range "
                            f"(+-{FLOAT32_MAX:.2e}), which a RowFile (float32) cannot store; "
                            f"rescale them (scaling every row by one factor changes no angle)")
        array = np.ascontiguousarray(rows.to("cpu", torch.float32).numpy())
        self._file.seek(start * self.shape[1] * ITEM)
        view = memoryview(array).cast("B")
        try:
            while len(view):
                view = view[self._file.write(view):]
        except OSError as e:
            raise MASCError(f"cannot write rows to the RowFile's temporary file ({e.strerror}): "
                            f"free space in its folder or set TMPDIR to a bigger disk") from e
        self._written[start:stop] = True

    def _read_into(self, out, start):
        """Fill the float32 array ``out`` (consecutive rows) from row ``start``."""
        self._file.seek(start * self.shape[1] * ITEM)
        view = memoryview(out).cast("B")
        while len(view):
            got = self._file.readinto(view)
            if not got:
                raise MASCError("a RowFile ended early: its temporary file was truncated")
            view = view[got:]

    def _numbers(self, index):
        """Row numbers (int64 NumPy) of an index: a slice in steps of one row, a tensor or array
        of row numbers, or a boolean mask; checked against the rows there are."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise MASCError("a RowFile is read in steps of one row")
            return np.arange(start, max(start, stop))
        index = torch.as_tensor(index).cpu()
        if index.dtype == torch.bool:
            index = index.nonzero().squeeze(1)
        index = index.numpy().astype(np.int64).ravel()
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise MASCError(f"row index out of range for a RowFile of {len(self)} rows")
        return index

    def __getitem__(self, index):
        index = self._numbers(index)
        out = np.empty((len(index), self.shape[1]), np.float32)
        breaks = np.flatnonzero(np.diff(index) != 1) + 1  # runs of consecutive rows: one read each
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(index)]):
            if hi > lo:
                self._read_into(out[lo:hi], index[lo])
        return torch.from_numpy(out)

    def take(self, index):
        """A read-only view of some rows (as :meth:`__getitem__` indexes them, in that order),
        read like a RowFile: MASC fits or predicts on part of the rows without a copy (the
        cross-fitting of :func:`MASC.noise.label_report`)."""
        return _Rows(self, self._numbers(index))

    def check_complete(self):
        """Refuse a file with rows never written (they would read as zeros)."""
        missing = np.flatnonzero(~self._written)
        if len(missing):
            raise MASCError(f"{len(missing)} of the RowFile's {len(self)} rows were never written "
                            f"(the first: row {missing[0]}); write every row before fitting or "
                            f"predicting")


class _Rows(RowFile):
    """Some rows of a RowFile, by row number (:meth:`RowFile.take`); read-only."""

    def __init__(self, parent, numbers):
        self._parent, self._at = parent, numbers
        self.shape, self.device = (len(numbers), parent.shape[1]), parent.device

    def __getitem__(self, index):
        return self._parent[self._at[self._numbers(index)]]

    def __setitem__(self, index, rows):
        raise MASCError("a view made by RowFile.take is read-only; write to the RowFile itself")

    def check_complete(self):
        self._parent.check_complete()

    def close(self):
        """The parent owns the file."""
