"""RowFile: float32 rows on disk, read back by range, index or mask; MASC fitted and predicting
from one gives the k, components and predictions of MASC on the same rows in memory, without
making the rows resident."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from MASC import MinimumAngleSubspaceClassifier as MASC
from MASC import masc
from MASC.errors import MASCError
from MASC.rowfile import RowFile
from conftest import uneven


def on_disk(X, batch=7):
    rows = RowFile(*X.shape)
    for start in range(0, len(X), batch):
        rows[start:start + batch] = X[start:start + batch]
    return rows


def test_rows_read_back_by_range_index_and_mask():
    X = torch.randn(50, 6).double()  # stored as float32
    with on_disk(X) as rows:
        assert len(rows) == 50 and rows.shape == (50, 6)
        assert torch.equal(rows[:], X.float()) and torch.equal(rows[10:23], X[10:23].float())
        assert rows[49:60].shape == (1, 6) and rows[5:5].shape == (0, 6)
        index = torch.tensor([3, 4, 5, 9, 0, 1, 49, 49])  # runs, a jump back, a repeat
        assert torch.equal(rows[index], X[index].float())
        mask = torch.rand(50) > 0.5
        assert torch.equal(rows[mask], X[mask].float())
        with pytest.raises(MASCError, match="out of range"):
            rows[torch.tensor([50])]
        with pytest.raises(MASCError, match="steps of one row"):
            rows[::2]


def test_a_view_of_some_rows_reads_like_those_rows_and_masc_fits_on_it():
    """RowFile.take: rows by number or mask, read by range or index like a RowFile of those rows;
    MASC fitted on the view equals MASC fitted on the rows in memory; writes are refused."""
    X, y = uneven()
    some = torch.randperm(len(X), generator=torch.Generator().manual_seed(2))[:len(X) // 2]
    with on_disk(X) as rows:
        view = rows.take(some)
        assert view.shape == (len(some), X.shape[1]) and len(view) == len(some)
        assert torch.equal(view[:], X[some].float()) and torch.equal(view[3:9], X[some[3:9]].float())
        assert torch.equal(view[torch.tensor([4, 0])], X[some[[4, 0]]].float())
        assert torch.equal(rows.take(y == 1)[:], X[y == 1].float())
        est = MASC().fit(view, y[some], classes=range(4))
        plain = MASC().fit(X[some].float(), y[some], classes=range(4))
        assert list(est.n_components_) == list(plain.n_components_)
        assert torch.equal(est.predict(rows.take(torch.arange(10))), plain.predict(X[:10].float()))
        with pytest.raises(MASCError, match="read-only"):
            view[0:1] = X[:1]
        with pytest.raises(MASCError, match="out of range"):
            view[torch.tensor([len(some)])]


def test_bad_writes_are_refused():
    with RowFile(4, 3) as rows:
        with pytest.raises(MASCError, match="NaN or infinite"):
            rows[0:1] = torch.tensor([[1.0, float("inf"), 0.0]])
        with pytest.raises(MASCError, match="cannot write rows of shape"):
            rows[0:1] = torch.zeros(1, 2)
        with pytest.raises(MASCError, match="cannot write rows of shape"):
            rows[3:5] = torch.zeros(2, 3)
        with pytest.raises(MASCError, match="cannot write rows of shape"):
            rows[0] = torch.zeros(1, 3)
        rows[0:2] = torch.ones(2, 3)
        with pytest.raises(MASCError, match="2 of the RowFile's 4 rows were never written"):
            MASC().fit(rows, [0, 1, 0, 1])


def test_a_row_file_that_cannot_fit_on_its_disk_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10, 10, 5))
    with pytest.raises(MASCError, match=r"need 0\.00 GiB in .*TMPDIR"):
        RowFile(10, 3, folder=tmp_path)


@pytest.mark.parametrize("predict_dtype", ["float64", masc.CHECKED])
def test_masc_from_a_row_file_equals_masc_in_memory(predict_dtype):
    """Both fitting routes (classes with fewer and more rows than dimensions); fit, iter_labellings
    and predict on the RowFile (break: read the wrong rows, or skip the float32 rounding)."""
    X, y = uneven()
    other = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    with on_disk(X) as rows:
        for labels in (y, other):
            plain = MASC(predict_dtype=predict_dtype).fit(X, labels, classes=range(4))
            for est in (MASC(predict_dtype=predict_dtype).fit(rows, labels, classes=range(4)),
                        masc.fit_labellings(rows, {"a": labels}, classes=range(4),
                                            predict_dtype=predict_dtype)["a"]):
                assert list(est.n_components_) == list(plain.n_components_)
                assert all(torch.equal(a, b) for a, b in zip(est.components_, plain.components_))
                pred = est.predict(rows)
                assert torch.is_tensor(pred) and torch.equal(pred, plain.predict(X))
                assert torch.equal(torch.as_tensor(est.decision_function(rows)),
                                   torch.as_tensor(plain.decision_function(X)))
        with pytest.raises(MASCError, match="partial_fit takes batches in memory"):
            MASC().partial_fit(rows, y)
        with pytest.raises(MASCError, match="X has 40 features, but"):
            MASC().fit(torch.randn(5, 3), [0, 1, 0, 1, 0]).predict(rows)


PEAK = """
import sys, torch
torch.set_num_threads(1)  # small eighs crawl when OpenMP threads compete with other work
from MASC import MinimumAngleSubspaceClassifier
from MASC.rowfile import RowFile
n, d, classes = 200_000, 300, 20
rows = RowFile(n, d)
for s in range(0, n, 5_000):
    rows[s:s + 5_000] = torch.rand(5_000, d, generator=torch.Generator().manual_seed(s))
def rss():
    lines = open("/proc/self/status").read().splitlines()
    return {l.split(":")[0]: int(l.split()[1]) for l in lines if l.startswith("Vm")}
open("/proc/self/clear_refs", "w").write("5")  # VmHWM starts again from here
before = rss()["VmRSS"]
est = MinimumAngleSubspaceClassifier(5).fit(rows, torch.arange(n) % classes)
est.predict(rows)
print((rss()["VmHWM"] - before) / 1024)
"""


@pytest.mark.slow  # a subprocess writing and reading 240 MB, about 10 s
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_fitting_from_a_row_file_does_not_make_the_rows_resident():
    """240 MB of rows in 20 classes: fit + predict from the file add less than half of that to
    the peak resident memory (a float64 class block is 24 MB, a prediction batch 10 MB; measured:
    62-72 MB); break: read all the rows into memory (303 MB)."""
    # glibc maps and returns every allocation over 1 MB, so the peak counts live memory, not what
    # its heap happens to keep (without this the peak varies from 60 to 210 MB between runs)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    grew = float(subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True,
                                check=True, env=env).stdout)
    assert grew < 120, f"peak RSS grew by {grew:.0f} MB while fitting from 240 MB of rows on disk"
