"""A deliberately naive MASC that follows the reference's steps one by one
(docs/protocol.md, 'MASC').

Per-sample grouping, the "+x / -x" doubled data, a D x D ``np.cov`` in float64, a full ``eigh``,
projections in batches of 100 with the B x B ``diag`` product, and ``arccos``. Used by the
equivalence tests and by ``benchmarks/bench_masc.py`` as the baseline.
"""
import numpy as np
import torch
from sklearn.preprocessing import normalize


def naive_fit(activations, labels, num_classes, threshold=0.99):
    """Per class: (k x D float64 subspace, k)."""
    groups = {c: [] for c in range(num_classes)}
    for i in range(len(labels)):
        groups[int(labels[i])].append(activations[i])
    subspaces = []
    for c in range(num_classes):
        rows = torch.stack(groups[c])
        doubled = []
        for row in rows:
            doubled.append(row)
            doubled.append(-1 * row)
        Z = torch.stack(doubled).numpy().astype(np.float64)
        cov = np.cov(Z.T)
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1]
        evals, evecs = evals[order], evecs[:, order]
        if threshold < 1:
            ratios = np.cumsum(evals) / np.sum(evals)
            k = int(np.sum(ratios <= threshold)) + 1
        else:
            k = int(threshold)
        V = normalize(evecs[:, :k].T, axis=1)
        subspaces.append(torch.from_numpy(V).double())
    return subspaces


def naive_angles(subspaces, activations, batch_size=100):
    """Angles in degrees, classes x samples."""
    per_class = []
    for V in subspaces:
        for start in range(0, len(activations), batch_size):
            X = activations[start:start + batch_size].double()
            P = torch.matmul(torch.matmul(X, V.T), V)
            cos = torch.diag(torch.matmul(X, P.T)) / (X.norm(dim=1) * P.norm(dim=1))
            per_class.append(torch.rad2deg(torch.arccos(torch.clamp(cos, -1, 1))))
    return torch.cat(per_class).reshape(len(subspaces), len(activations))


def naive_predict(subspaces, activations):
    return torch.min(naive_angles(subspaces, activations), dim=0).indices
