"""Shared test setup: one torch thread, fixed seeds, the reference data in tests/data, what
several tests reuse (built once a session: the shared search run, zoo models), and (when the
environment variable CI is set) a failing exit status for any skipped test."""

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
#: Facts the tests check, extracted from the official releases (see tests/data/README.md).
DATA_DIR = TESTS_DIR / "data"


@pytest.fixture(autouse=True)
def _fixed_seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def data_dir():
    """tests/data: the official facts the tests compare against (part of the checkout)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


# ------------------------------------------------------------------ shared, built once a session
# What several tests reuse because building it is slow. Tests only read these objects (copy
# them to change anything).


@pytest.fixture(scope="session")
def shared_search_run(tmp_path_factory):
    """The OUTPUT_DIR of a finished search (engine_helpers.SEARCH_OPTS, seed 0), run once per
    test session."""
    from engine_helpers import search_argv, train_net

    out = tmp_path_factory.mktemp("shared_search") / "run"
    status, err = train_net(search_argv(out))
    assert status == 0, err
    return out


@pytest.fixture(scope="session")
def zoo_model():
    """`zoo_model(name)`: the zoo classifier `name` (random weights, eval mode), built once per
    session (building is the slow part)."""
    from mobile_cv_nas import model_zoo

    models = {}

    def get(name):
        if name not in models:
            models[name] = model_zoo.get(name).eval()
        return models[name]

    return get


@pytest.fixture
def no_network(monkeypatch):
    """Make any network connection (and iopath's downloader) fail loudly. The fixture's value
    is the list of attempts, so a test can also assert that none was made."""
    import socket

    import iopath.common.download as iopath_download

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(iopath_download, "download", refuse)
    return attempts


def pytest_report_header(config):
    return f"torch {torch.__version__}, threads {torch.get_num_threads()}"


# Under CI a skipped test is a failure: a skip there means a check silently did not run.
# The skips are read from the terminal reporter's tally (xfails are tallied apart), which sees
# every test of the run, wherever it lives. So is a deselected one (-m "not slow", -k): CI runs
# every tier.
_IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")


def pytest_configure(config):
    """Under CI, selecting tests is refused up front: with worker processes (pytest-xdist) the
    deselection happens in the workers, where the tally below does not see it."""
    chosen = [
        flag
        for flag, value in (
            ("-m", config.option.markexpr),
            ("-k", config.option.keyword),
            ("--deselect", getattr(config.option, "deselect", None)),
        )
        if value
    ]
    if _IN_CI and chosen and not hasattr(config, "workerinput"):
        raise pytest.UsageError(
            f"CI is set: {' and '.join(chosen)} would leave tests out; CI runs every tier "
            f"(unset CI for a partial run)."
        )


def _tally(config, kind):
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return reporter.stats.get(kind, []) if reporter is not None else []


def pytest_sessionfinish(session, exitstatus):
    not_run = _tally(session.config, "skipped") + _tally(session.config, "deselected")
    if _IN_CI and exitstatus == pytest.ExitCode.OK and not_run:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    skipped = _tally(config, "skipped")
    if _IN_CI and skipped:
        terminalreporter.section(
            f"CI is set: {len(skipped)} skipped test(s) fail the run", red=True, bold=True
        )
        for report in skipped:
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
            terminalreporter.write_line(f"SKIPPED {report.nodeid}: {reason}")
    deselected = _tally(config, "deselected")
    if _IN_CI and deselected:
        terminalreporter.section(
            f"CI is set: {len(deselected)} deselected test(s) fail the run (CI runs every tier: "
            f"no -m or -k)",
            red=True,
            bold=True,
        )
