"""Shared fixtures: the real data folder (fetched by .ci/run) and small generated data."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(os.environ.get("MASC_DATA", ROOT / "data"))


def have(name):
    return (DATA / name / "raw" / "train-labels-idx1-ubyte").exists()


requires_mnist = pytest.mark.skipif(
    not have("MNIST"), reason="real MNIST absent: run `python -m MASC.data fetch MNIST`")
requires_fashion = pytest.mark.skipif(
    not have("FashionMNIST"), reason="real Fashion-MNIST absent: run `python -m MASC.data fetch`")


@pytest.fixture(scope="session")
def data_root():
    return DATA
