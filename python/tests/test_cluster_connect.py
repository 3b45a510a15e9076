"""``r3.cluster.ClusterReader`` with no Kafka broker reachable fails within ``connect_timeout_s`` naming the bootstrap
servers (before: it blocked past 30 s with only the Kafka client's warnings on the child's standard error).

Runs the real ``r3 cluster-read`` as the child; the "cluster" is a loopback port nobody listens on. Needs the examples'
runtime class path (``r3_build``: ``examples/target/classpath.txt``, written at ``package``); skipped without it.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import r3_build  # noqa: E402

from r3.cluster import ClusterError, ClusterReader, KafkaUnreachable, r3_command  # noqa: E402

CLASSPATH = r3_build.classpath() or ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(90)
@pytest.mark.skipif(not CLASSPATH, reason=f"{r3_build.NO_CLASSPATH}: no r3 cluster-read to run")
def test_no_broker_reachable_fails_within_the_connect_timeout_naming_the_bootstrap_servers() -> None:
    bootstrap = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with ClusterReader(r3_command(classpath=CLASSPATH), bootstrap=bootstrap, group="trainer", connect_timeout_s=2) as reader:
        with pytest.raises(KafkaUnreachable) as e:
            next(reader)
    elapsed = time.monotonic() - started
    assert elapsed < 45, f"failed after {elapsed:.0f} s"
    text = str(e.value)
    assert f"no Kafka broker answered at {bootstrap} within 2000 ms" in text and "\n" not in text, text
    assert isinstance(e.value, ClusterError) and e.value.bootstrap == bootstrap


@pytest.mark.timeout(10)
def test_the_connect_timeout_is_checked_before_anything_starts() -> None:
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="connect_timeout_s"):
            ClusterReader(["false"], bootstrap="127.0.0.1:9", group="trainer", connect_timeout_s=bad)
