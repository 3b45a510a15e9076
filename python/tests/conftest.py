"""Bounds every test in time and gives each a short folder for Unix sockets.

No test may hang: past its limit (``@pytest.mark.timeout(s)`` on the test or its module, else 300 s) faulthandler
prints every thread's traceback and ends the run with exit status 1, which fails the build. pytest-timeout is not
needed for that. Module- and session-scoped fixtures are set up before the clock starts.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import sys
import tempfile
from typing import Iterator

import pytest

DEFAULT_TIMEOUT_S = 300.0


@pytest.fixture(autouse=True)
def _bounded_in_time(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker else DEFAULT_TIMEOUT_S
    faulthandler.dump_traceback_later(limit, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A folder with a short path: a Unix socket path has at most 107 bytes, pytest's tmp_path can be longer."""
    d = tempfile.mkdtemp(prefix="r3t-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def socket_path(short_dir: str) -> str:
    return os.path.join(short_dir, "sidecar.sock")
