import os
from pathlib import Path

import pytest

# Keep each test process to one BLAS/torch thread: CI runs pytest-xdist workers on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
