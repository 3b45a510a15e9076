"""Missing rows against a live ``r3 serve``: a store of 256 experts stored as uint8 (record version 4) with one row
the host pack dropped (an out-of-range expert id), written by ``MissingRowsStore.java`` on the examples' classpath.

Skipped without this build's r3 class path (as test_trainer_client.py). Every child process has a deadline.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from r3.trainer import MissingRowsError, ReplayClient  # noqa: E402
import r3_build  # noqa: E402
from test_trainer_client import CLASSPATH, JAVA, JVM_FLAGS, Server, live  # noqa: E402

TOKENS, LAYERS, TOP_K = 5, 3, 2


def ids(t: int) -> np.ndarray:
    """The row of token ``t`` as MissingRowsStore.java wrote it: ``[layers, top_k]``."""
    return np.array([(255 - 3 * t - 50 * j) % 256 for j in range(LAYERS * TOP_K)]).reshape(LAYERS, TOP_K)


FULL = np.stack([ids(t) for t in range(TOKENS)])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayClient]:
    if not CLASSPATH:
        pytest.skip(r3_build.NO_CLASSPATH)
    store = tmp_path_factory.mktemp("missing") / "store"
    writer = Path(__file__).resolve().parent / "MissingRowsStore.java"
    done = subprocess.run([JAVA, "-Xmx256m", *JVM_FLAGS, "-cp", CLASSPATH, str(writer), str(store)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"MissingRowsStore exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    server = Server(store)
    try:
        yield ReplayClient(server.url, timeout_s=20)
    finally:
        server.stop()


@live
def test_the_manifest_and_listing_say_how_missing_rows_are_served(client: ReplayClient) -> None:
    m = client.manifest()
    assert (m.num_experts, m.dtype, m.store_format, m.missing_as, m.missing_dtypes) == (256, "uint8", 3, -1, ("int16", "int32", "int64"))
    assert [(r.request_id, r.seq_len, r.missing_rows) for r in client.list_requests()] == [("whole", 5, 0), ("gap", 5, 1)]


@live
def test_a_whole_record_is_uint8_with_expert_255_and_its_checksum(client: ReplayClient) -> None:
    got = client.fetch("whole")
    assert got.dtype == np.uint8 and got[0, 0, 0] == 255
    np.testing.assert_array_equal(got, FULL)


@live
@pytest.mark.parametrize("dtype", ["int16", "int32", "int64"])
def test_a_missing_row_is_minus_one_in_every_signed_dtype(client: ReplayClient, dtype: str) -> None:
    want = FULL.astype(dtype)
    want[2] = -1
    got = client.fetch("gap", dtype=dtype)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(client.fetch(1, dtype=dtype, missing=-7, layers=(1, 3))[2], np.full((2, TOP_K), -7))


@live
def test_native_refuses_rows_that_include_a_missing_one_naming_the_count(client: ReplayClient) -> None:
    with pytest.raises(MissingRowsError, match=r"request 'gap': HTTP 409: dtype=native \(uint8\) cannot carry the 1 missing row .*"
                                               r"ask dtype=int16, int32, int64"):
        client.fetch("gap")
    np.testing.assert_array_equal(client.fetch("gap", start=3), FULL[3:], "the rows after the missing one")
    with pytest.raises(ValueError, match="does not fit dtype='int16'"):
        client.fetch("gap", dtype="int16", missing=1 << 20)
