"""Shared fixtures: paths to ../shared, the tshark oracle, a temp data dir, --update-golden."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sensors import base

base.DEBUG = True        # our own parser bugs raise in tests instead of becoming weird events

ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT.parent / "shared").resolve()
PCAPS = SHARED / "pcaps"
DATASETS = SHARED / "datasets"
GOLDEN = ROOT / "tests" / "golden"
IN_CI = os.environ.get("CI") == "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the code")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def need_shared(path: Path) -> Path:
    """Skip (outside CI) or fail (under CI=true) when a file of ../shared is missing."""
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing: CI must have ../shared beside the checkout")
        pytest.skip(f"{path} not available (../shared is not beside this checkout)")
    return path


def need_tshark() -> str:
    exe = shutil.which("tshark")
    if exe is None:
        if IN_CI:
            pytest.fail("tshark is not installed; `make test` installs it (apt-get install tshark)")
        pytest.skip("tshark not installed")
    return exe


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d
