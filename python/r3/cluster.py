"""Trainer side of an R3 cluster: the requests many rollout nodes announced on Kafka, with their routing.

This module does not talk to Kafka itself: it runs ``r3 cluster-read`` (the Java ``ClusterReader``: consumer group,
fetches from the nodes with retries, checksums, hand-off in offset order, duplicates dropped) as a child process and
reads its JSON lines, so Python trainers get the same semantics without a second implementation of them and without a
Kafka package. (Debian's ``python3-kafka``, kafka-python 2.0.2, did produce, consume in a group and commit against the
Kafka 4.4 test broker when tried by hand; a reader on it is not part of this module.) The guarantees are the Java
reader's, commit-after-hand-off included: the child hands a request off, and may commit it, only when this module
acknowledges it, which it does when you ask for the next one (so a record your loop body was working on when the process
died is read again by the group)::

    from r3.cluster import ClusterReader, r3_command
    with ClusterReader(r3_command(), bootstrap="kafka:9092", group="trainer-pp0", layers=(0, 29)) as reader:
        for record in reader:                       # blocks for the next announced request
            record.routing                          # numpy [S, L', K] in the stored dtype (uint8/uint16/int32)
            record.announcement["requestId"], record.announcement["node"], record.announcement["crc32c"]

Each trainer rank of a group gets a disjoint share of the requests (Kafka partitions); ranks that need every request
use one group each. See docs/cluster.md.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ClusterReader", "ClusterRecord", "ClusterError", "KafkaUnreachable", "r3_command"]

_FLAGS = ("--add-exports=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED "
          "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED "
          "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED -Dchronicle.analytics.disable=true "
          "-Dchronicle.announcer.disable=true")


class ClusterError(RuntimeError):
    """``r3 cluster-read`` failed: a node stayed away (the message names the node and the request), or Kafka did."""


class KafkaUnreachable(ClusterError):
    """No Kafka broker answered at the bootstrap servers within ``connect_timeout_s``; ``bootstrap`` names them."""

    def __init__(self, message: str, bootstrap: str) -> None:
        super().__init__(message)
        self.bootstrap = bootstrap


@dataclass(frozen=True)
class ClusterRecord:
    """One announced request: the announcement's JSON members, the routing fetched from its node, and where it was on Kafka."""

    announcement: dict[str, Any]
    routing: np.ndarray
    partition: int
    offset: int


def r3_command(classpath: str | None = None, java: str | None = None, jvm_flags: str | None = None) -> list[str]:
    """The command that runs ``r3``: ``java <flags> -cp <classpath> dev.routingreplay.examples.R3Command``.

    ``classpath`` defaults to ``$R3_CLASSPATH`` (the examples module's runtime class path, its classes included),
    ``java`` to ``$JAVA`` or ``java``, ``jvm_flags`` to ``$R3_JVM_FLAGS`` or the flags Chronicle Queue needs.
    """
    cp = classpath or os.environ.get("R3_CLASSPATH")
    if not cp:
        raise ValueError("no r3 class path: pass classpath= or set R3_CLASSPATH (examples/target/classes plus the contents of "
                         "examples/target/classpath.txt, joined with ':')")
    flags = (jvm_flags if jvm_flags is not None else os.environ.get("R3_JVM_FLAGS", _FLAGS)).split()
    return [java or os.environ.get("JAVA", "java"), *flags, "-cp", cp, "dev.routingreplay.examples.R3Command"]


class ClusterReader:
    """Iterates the requests of a consumer group's share of an announcement topic (see the module doc).

    ``layers`` is a ``(FROM, TO)`` pair of 0-based MoE layers (a pipeline-parallel rank's), ``start`` the first row of
    each request; both are cut on the nodes. ``max_in_flight`` bounds the fetches in flight (1 to 4096). The iterator
    never ends on its own; :meth:`close` (or leaving the ``with`` block) stops the child, which commits what was
    acknowledged and leaves the group. A failure of the child raises :class:`ClusterError` with its message;
    when no broker at ``bootstrap`` answered within ``connect_timeout_s`` (default 30 s), :class:`KafkaUnreachable`.
    """

    def __init__(self, r3: Sequence[str], bootstrap: str, group: str, topic: str = "r3-requests",
                 layers: tuple[int, int] | None = None, start: int = 0, max_in_flight: int = 16,
                 connect_timeout_s: float = 30.0) -> None:
        if not (isinstance(connect_timeout_s, (int, float)) and connect_timeout_s > 0 and math.isfinite(connect_timeout_s)):
            raise ValueError(f"connect_timeout_s must be a positive number of seconds, got {connect_timeout_s!r}")
        if start < 0:
            raise ValueError(f"start must not be negative, got {start}")
        if layers is not None and not (0 <= layers[0] < layers[1]):
            raise ValueError(f"layers must be (FROM, TO) with 0 <= FROM < TO, got {layers}")
        self._dir = tempfile.mkdtemp(prefix="r3-cluster-")
        cmd = [*r3, "cluster-read", "--bootstrap", bootstrap, "--group", group, "--topic", topic, "--start", str(start),
               "--max-in-flight", str(max_in_flight), "--connect-timeout-ms", str(max(1, round(connect_timeout_s * 1000))),
               "--json", "--ack-stdin", "--npy-dir", self._dir]
        if layers is not None:
            cmd += ["--layers", f"{layers[0]}:{layers[1]}"]
        self._stderr = tempfile.TemporaryFile()
        self._bootstrap = bootstrap
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                      bufsize=1)
        self._owed = False

    def __enter__(self) -> ClusterReader:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(acknowledge=exc_type is None)

    def __iter__(self) -> Iterator[ClusterRecord]:
        return self

    def __next__(self) -> ClusterRecord:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if self._owed:
            self._proc.stdin.write("ok\n")   # the previous record was handed off: the child may commit it now
            self._proc.stdin.flush()
            self._owed = False
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(timeout=30)
            text = self._error_text()
            for error in text.splitlines():
                if "no Kafka broker answered at" in error:  # the child's one line for it; Kafka's warnings are around it
                    raise KafkaUnreachable(error.strip(), self._bootstrap)
            raise ClusterError(f"r3 cluster-read ended (exit status {self._proc.returncode}): {text}")
        member = json.loads(line)
        path = member.pop("npy")
        routing = np.load(path)
        os.remove(path)
        self._owed = True
        return ClusterRecord(member, routing, int(member.pop("partition")), int(member.pop("offset")))

    def _error_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").strip()

    def close(self, acknowledge: bool = True) -> None:
        """Stops the child: acknowledges the last record returned when ``acknowledge`` (your loop finished with it;
        leaving a ``with`` block on an exception does not), closes its input and sends SIGTERM (it commits what was
        acknowledged and leaves the group), waits up to 30 s, then kills it. A record not acknowledged stays uncommitted:
        the group reads it again."""
        if self._proc.stdin is not None:
            try:
                if acknowledge and self._owed and self._proc.poll() is None:
                    self._proc.stdin.write("ok\n")
                    self._proc.stdin.flush()
                    self._owed = False
                self._proc.stdin.close()
            except OSError:
                pass
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)
