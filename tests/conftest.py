"""Shared test setup: one torch thread, fixed seeds, and the reference data folder."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
#: Reference data (read-only) lives beside the checkout, in ../shared.
SHARED_DIR = (REPO_ROOT.parent / "shared").resolve()


@pytest.fixture(autouse=True)
def _fixed_seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_dir():
    """The reference data folder `../shared` beside the checkout (skips if it is absent)."""
    if not (SHARED_DIR / "fbnetv2_archs.yaml").is_file():
        pytest.skip(f"reference data folder {SHARED_DIR} (../shared beside the checkout) is absent")
    return SHARED_DIR


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture
def no_network(monkeypatch):
    """Make any network connection (and iopath's downloader) fail loudly."""
    import socket

    import iopath.common.file_io as file_io

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(file_io, "download", refuse)
    # The HTTP handler remembers URLs it resolved before; forget them for this test.
    from mobile_cv_nas.io import path_manager

    for handler in set(path_manager._path_handlers.values()):
        if isinstance(handler, file_io.HTTPURLHandler):
            monkeypatch.setattr(handler, "cache_map", {})
    return refuse


def pytest_report_header(config):
    return f"torch {torch.__version__}, threads {torch.get_num_threads()}, shared: {SHARED_DIR}"
