"""What MASC keeps of each class's training rows until it solves the subspaces."""
import torch

from .checked import exponent_range
from .errors import MASCError

GATHER_CHUNK = 1 << 24  # elements of a class block gathered (and cast to float64) at once


def check_fittable(R, c):
    """Refuse class c's rows (float64) whose Gram matrix would under- or overflow float64 (every
    subspace would come out empty, and every row predicted as the first class)."""
    low, high = exponent_range(torch.float64)
    top = R.abs().amax(1)
    if ((top > 2.0 ** high) | ((top > 0) & (top < 2.0 ** low))).any():
        raise MASCError(f"rows of class {c!r} have values beyond {2.0 ** high:.0e} or all below "
                        f"{2.0 ** low:.0e} in size: their Gram matrix over- or underflows "
                        f"float64; rescale X (scaling every row by one factor changes no angle)")


class ClassRows:
    """Per class: its rows while it has fewer rows than dimensions (its subspace then comes from
    their N_c x N_c Gram matrix), else X_c^T X_c in float64 (:meth:`add`, for partial_fit); or,
    for rows that several labellings share (:meth:`shared_by`), only the class's indices into
    them, gathered when the class is solved. ``count``: rows per class."""

    def __init__(self):
        self.rows, self.gram, self.count = {}, {}, {}
        self.shared = None  # (X, {class: row indices into X})

    @classmethod
    def shared_by(cls, X, groups):
        """The classes of rows X that this store only indexes (``groups``: (class, row mask))."""
        store = cls()
        store.shared = (X, {c: rows.nonzero().squeeze(1) for c, rows in groups})
        store.count = {c: len(index) for c, index in store.shared[1].items()}
        return store

    def add(self, c, Xc, D, device):
        """Keep rows while a class has fewer rows than dimensions, else accumulate X^T X
        (float64)."""
        check_fittable(Xc.double(), c)
        self.count[c] = self.count.get(c, 0) + len(Xc)
        if c not in self.gram and self.count[c] < D:
            self.rows.setdefault(c, []).append(Xc)
            return
        if c not in self.gram:
            self.gram[c] = torch.zeros(D, D, dtype=torch.float64, device=device)
            for rows in self.rows.pop(c, []):
                self.gram[c] += rows.double().T @ rows.double()
        Xc = Xc.double()
        self.gram[c] += Xc.T @ Xc

    def block(self, c, device):
        """Class c's rows in float64: gathered from the shared rows chunk by chunk (no float32
        copy of the block), or the rows :meth:`add` kept."""
        if self.shared is None:
            return torch.cat(self.rows[c]).double()
        X, index = self.shared[0], self.shared[1][c]
        R = torch.empty(len(index), X.shape[1], dtype=torch.float64, device=device)
        step = max(1, GATHER_CHUNK // X.shape[1])
        for i in range(0, len(index), step):
            R[i:i + step] = X[index[i:i + step]].to(device)
        check_fittable(R, c)
        return R
