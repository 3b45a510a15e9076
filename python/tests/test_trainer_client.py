"""The trainer client against a live ``r3 serve``: the store is written by ``r3 run`` (the simulated engine) and the
oracle is ``r3 export`` of the same store.

Needs this build's r3 (``r3_build``: the class path Maven writes to ``examples/target/classpath.txt`` at ``package``);
without it the live tests are skipped, with that reason. Every socket has a timeout and every child
process a deadline, so nothing here can hang.
"""

from __future__ import annotations

import csv
import http.server
import io
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import r3_build  # noqa: E402

from r3.trainer import (  # noqa: E402
    BadRequest,
    ChecksumError,
    ReplayClient,
    ReplayError,
    RequestInfo,
    RequestNotFound,
    ServerBusy,
    Unauthorized,
    crc32c,
    crc32c_combine,
)

CLASSPATH = r3_build.classpath() or ""
JVM_FLAGS = r3_build.jvm_flags()
JAVA = r3_build.java()
TOKEN = "trainer-test-token_0123"
ROLLOUT_REQUESTS = 10

live = pytest.mark.skipif(not CLASSPATH, reason=f"{r3_build.NO_CLASSPATH}: no r3 server to test against")


# ------------------------------------------------------------------------------------------------ helpers


def r3(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Runs an ``r3`` command to completion (bounded)."""
    cmd = [JAVA, "-Xmx512m", *JVM_FLAGS, "-cp", CLASSPATH, "dev.routingreplay.examples.R3Command", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"r3 {' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


class Server:
    """``r3 serve`` in a child process on a free loopback port; stopped (then killed) at exit."""

    def __init__(self, store: Path, *args: str) -> None:
        cmd = [JAVA, "-Xmx512m", *JVM_FLAGS, "-cp", CLASSPATH, "dev.routingreplay.examples.R3Command", "serve", "--store", str(store),
               "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        deadline = time.monotonic() + 60
        seen = []
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError(f"r3 serve did not start within 60 s: {seen}")
            seen.append(line)
            if line.startswith("serving "):
                self.url = line.split(" on ")[1].split("/requests")[0]
                self.banner = line
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"r3 serve exited {self.proc.returncode}: {seen}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CLASSPATH:
        pytest.skip(r3_build.NO_CLASSPATH)
    out = tmp_path_factory.mktemp("r3") / "store"
    r3("run", "--model", "gpt-oss-120b", "--requests", str(ROLLOUT_REQUESTS), "--concurrency", "4", "--seed", "7", "--out", str(out))
    return out


@pytest.fixture(scope="module")
def oracle(store: Path, tmp_path_factory: pytest.TempPathFactory) -> List[dict]:
    """``r3 export`` of the store: one dict per request (manifest.tsv's columns plus ``array``), in write order."""
    out = tmp_path_factory.mktemp("export")
    r3("export", "--store", str(store), "--out", str(out))
    with open(out / "manifest.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        row["array"] = np.load(out / row["file"], allow_pickle=False)
    assert len(rows) >= ROLLOUT_REQUESTS
    return rows


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    s = Server(store, "--token-file", str(token_file), "--max-followers", "2")
    yield s
    s.stop()


@pytest.fixture()
def client(server: Server) -> ReplayClient:
    return ReplayClient(server.url, token=TOKEN, timeout_s=20)


# ------------------------------------------------------------------------------------------------ CRC32C, no server


def test_crc32c_matches_the_check_value_and_combines() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    rng = np.random.default_rng(3)
    for n in (0, 1, 1023, 1024, 4097, 70_001):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        split = n // 3
        assert crc32c_combine(crc32c(data[:split]), crc32c(data[split:]), n - split) == crc32c(data)


# ------------------------------------------------------------------------------------------------ a stub server


class _Stub(http.server.BaseHTTPRequestHandler):
    """Serves one crafted int64 answer with -1 for missing ids and correct checksums."""

    body = b""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(len(self.body)))
        self.send_header("x-r3-seq-len", "2")
        self.send_header("x-r3-body-crc32c", f"{crc32c(self.body):08x}")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def test_missing_ids_take_the_asked_value_and_tensors_need_torch() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([[[1, -1]], [[-1, 3]]], dtype="<i8"))
    _Stub.body = buf.getvalue()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        c = ReplayClient(f"http://127.0.0.1:{httpd.server_address[1]}", token="", timeout_s=10)
        assert c.fetch(0, dtype="int64").tolist() == [[[1, -1]], [[-1, 3]]]
        assert c.fetch(0, dtype="int64", missing=-100).tolist() == [[[1, -100]], [[-100, 3]]]
        try:
            import torch  # type: ignore[import-not-found]  # noqa: F401

            assert tuple(c.fetch(0, dtype="int64", as_tensor=True).shape) == (2, 1, 2)
        except ImportError:
            with pytest.raises(ImportError, match="as_tensor=True needs torch"):
                c.fetch(0, dtype="int64", as_tensor=True)
        with pytest.raises(ValueError, match="missing=-100 needs dtype=.int16., .int32. or .int64."):
            c.fetch(0, missing=-100)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_arguments_are_checked_before_anything_is_sent() -> None:
    c = ReplayClient("http://127.0.0.1:9", timeout_s=1)
    for kwargs, match in [
        (dict(dtype="float16"), "dtype='float16'"),
        (dict(start=-1), "start=-1"),
        (dict(layers=(3, 2)), "layers=\\(3, 2\\)"),
        (dict(layers="1:"), "layers='1:'"),
        (dict(layers=slice(0, 4, 2)), "layers=slice"),
    ]:
        with pytest.raises(ValueError, match=match):
            c.fetch(0, **kwargs)
    with pytest.raises(ValueError, match="request=-3"):
        c.fetch(-3)
    with pytest.raises(ReplayError, match="ordinal 0: cannot reach"):
        c.fetch(0)


# ------------------------------------------------------------------------------------------------ live


@live
def test_health_needs_no_token_and_everything_else_does(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "bearer token from --token-file" in server.banner and TOKEN not in server.banner
    monkeypatch.delenv("R3_TOKEN", raising=False)
    anonymous = ReplayClient(server.url, timeout_s=20)
    assert anonymous.health()
    with pytest.raises(Unauthorized, match="/manifest: HTTP 401: missing bearer token"):
        anonymous.manifest()
    with pytest.raises(Unauthorized, match="ordinal 0: HTTP 401"):
        anonymous.fetch(0)
    with pytest.raises(Unauthorized, match="/requests"):
        anonymous.list_requests()
    wrong = ReplayClient(server.url, token="not-the-token", timeout_s=20)
    with pytest.raises(Unauthorized, match="invalid bearer token") as e:
        wrong.fetch("any")
    assert "not-the-token" not in str(e.value) and TOKEN not in str(e.value)
    monkeypatch.setenv("R3_TOKEN", TOKEN)
    assert ReplayClient(server.url, timeout_s=20).manifest().top_k == 4, "the token comes from R3_TOKEN"


@live
def test_listing_and_manifest_match_the_export(client: ReplayClient, oracle: List[dict]) -> None:
    m = client.manifest()
    assert (m.moe_layers, m.top_k, m.dtype, m.store_format, m.missing_as) == (36, 4, "uint8", 3, -1)
    assert m.missing_dtypes == ("int16", "int32", "int64")
    assert (m.first_ordinal, m.last_ordinal) == (0, len(oracle) - 1)
    listed = client.list_requests()
    assert [r.ordinal for r in listed] == list(range(len(oracle)))
    assert [(r.request_id, r.seq_len, r.index) for r in listed] == [(o["request_id"], int(o["seq_len"]), o["index"]) for o in oracle]
    assert client.list_requests(after=listed[3], limit=2) == listed[4:6]
    assert client.list_requests(after=listed[3].index, limit=0) == []


@live
def test_every_address_fetches_the_exported_array(client: ReplayClient, oracle: List[dict]) -> None:
    listed = client.list_requests()
    newest = {row["request_id"]: row for row in oracle}  # an id used again in a later round: the newest record
    for ordinal, row in enumerate(oracle):
        for request, want in ((ordinal, row), (listed[ordinal], row), (row["request_id"], newest[row["request_id"]])):
            got = client.fetch(request)
            assert got.dtype == np.uint8 and got.shape == want["array"].shape, request
            np.testing.assert_array_equal(got, want["array"], err_msg=str(request))


@live
def test_every_option_is_applied_on_the_server(client: ReplayClient, oracle: List[dict]) -> None:
    for ordinal in (0, 5, len(oracle) - 1):
        full = oracle[ordinal]["array"]
        s = full.shape[0]
        cases = [
            (dict(start=3), full[3:]),
            (dict(start=s), full[s:]),
            (dict(drop_last=True), full[: s - 1]),
            (dict(start=2, drop_last=True), full[2 : s - 1]),
            (dict(layers=(10, 20)), full[:, 10:20]),
            (dict(layers="0:1"), full[:, 0:1]),
            (dict(layers=range(30, 36)), full[:, 30:36]),
            (dict(layers=slice(5, 6)), full[:, 5:6]),
            (dict(dtype="int32"), full.astype(np.int32)),
            (dict(dtype="int64", start=1, layers=(2, 4), drop_last=True), full[1 : s - 1, 2:4].astype(np.int64)),
        ]
        for kwargs, want in cases:
            got = client.fetch(ordinal, **kwargs)
            assert got.dtype == want.dtype and got.shape == want.shape, (ordinal, kwargs, got.shape, want.shape)
            np.testing.assert_array_equal(got, want, err_msg=f"ordinal {ordinal} {kwargs}")
        # a second turn: the rows after the first turn, joined to it, are the whole request
        turn = s // 2
        np.testing.assert_array_equal(np.concatenate([client.fetch(ordinal)[:turn], client.fetch(ordinal, start=turn)]), full)


@live
def test_errors_name_the_request_and_carry_the_servers_reason(client: ReplayClient, oracle: List[dict]) -> None:
    with pytest.raises(RequestNotFound, match=rf"ordinal 1000000: HTTP 404: ordinal 1000000: no record with that ordinal \(the store holds ordinals 0 to {len(oracle) - 1}\)"):
        client.fetch(1_000_000)
    with pytest.raises(RequestNotFound, match="request 'no/such id': HTTP 404: request id 'no/such id': no record with that id"):
        client.fetch("no/such id")
    s = int(oracle[0]["seq_len"])
    with pytest.raises(BadRequest, match=rf"ordinal 0: HTTP 400: bad query parameter start='{s + 1}': past the end of request"):
        client.fetch(0, start=s + 1)
    with pytest.raises(BadRequest, match="bad query parameter layers='30:37'"):
        client.fetch(oracle[1]["request_id"], layers=(30, 37))
    with pytest.raises(ReplayError, match="bad query parameter after='zz'"):
        client.list_requests(after="zz")


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        line_end = body.index(b"\r\n")
        size = int(body[:line_end].split(b";")[0], 16)
        if size == 0:
            return out
        out += body[line_end + 2 : line_end + 2 + size]
        body = body[line_end + 2 + size + 2 :]


def _proxy(upstream: str, patch: Callable[[bytes], bytes], resign: bool = False) -> "tuple[str, Callable[[], None]]":
    """An HTTP proxy (one connection at a time, each closed after its answer) that hands every response body to
    ``patch`` and forwards it with a content-length; the headers, checksums included, are kept, except that with
    ``resign`` X-R3-Body-CRC32C is recomputed over the patched body (a server that checksums what it got wrong)."""
    host, port = upstream.split("//")[1].split(":")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(10)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                request = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
                response = b""
                with socket.create_connection((host, int(port)), timeout=10) as up:
                    up.sendall(request)
                    while True:
                        chunk = up.recv(65536)
                        if not chunk:
                            break
                        response += chunk
                head_end = response.index(b"\r\n\r\n")
                lines = response[:head_end].split(b"\r\n")
                body = response[head_end + 4 :]
                if any(line.lower() == b"transfer-encoding: chunked" for line in lines):
                    body = _dechunk(body)
                dropped = (b"transfer-encoding:", b"content-length:", b"connection:") + ((b"x-r3-body-crc32c:",) if resign else ())
                kept = [line for line in lines if not line.lower().startswith(dropped)]
                body = patch(body)
                if resign:
                    kept.append(b"x-r3-body-crc32c: %08x" % crc32c(body))
                head = b"\r\n".join(kept + [b"content-length: %d" % len(body), b"connection: close"]) + b"\r\n\r\n"
                conn.sendall(head + body)

    threading.Thread(target=serve, daemon=True).start()

    def close() -> None:
        stop.set()
        listener.close()

    return f"http://127.0.0.1:{listener.getsockname()[1]}", close


@live
def test_a_byte_changed_on_the_way_is_a_checksum_error_naming_the_request(server: Server, oracle: List[dict]) -> None:
    def flip_last(body: bytes) -> bytes:
        return body[:-1] + bytes([body[-1] ^ 0x01])

    url, close = _proxy(server.url, lambda body: body)
    try:
        np.testing.assert_array_equal(ReplayClient(url, token=TOKEN, timeout_s=20).fetch(2), oracle[2]["array"])
    finally:
        close()
    for patch in (flip_last, lambda body: body[:20] + bytes([body[20] ^ 0x04]) + body[21:]):
        url, close = _proxy(server.url, patch)
        try:
            c = ReplayClient(url, token=TOKEN, timeout_s=20)
            with pytest.raises(ChecksumError, match=r"ordinal 2: HTTP 200: body CRC32C [0-9a-f]{8}, the server sent"):
                c.fetch(2)
            with pytest.raises(ChecksumError, match="request '" + oracle[3]["request_id"]):
                c.fetch(oracle[3]["request_id"], layers=(0, 3), dtype="int64")
        finally:
            close()
    # a body that matches its body checksum but not the writer's checksum of the rows (a whole native fetch)
    url, close = _proxy(server.url, flip_last, resign=True)
    try:
        c = ReplayClient(url, token=TOKEN, timeout_s=20)
        with pytest.raises(ChecksumError, match=r"ordinal 2: HTTP 200: rows CRC32C [0-9a-f]{8}, the writer stored X-R3-CRC32C"):
            c.fetch(2)
        assert c.fetch(2, dtype="int64")[-1, -1, -1] != oracle[2]["array"][-1, -1, -1], "a slice has only the body checksum"
    finally:
        close()


@live
def test_a_record_damaged_on_disk_is_refused_naming_it(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "damaged"
    shutil.copytree(store, copy)
    files = sorted((copy / "requests").glob("*.cq4"))
    data = bytearray(files[0].read_bytes())
    starts = [i for i in range(len(data) - 5) if data[i : i + 5] == b"R3RQ\x05"]
    assert len(starts) >= 2, "request records of version 5"
    data[starts[1] + 400] ^= 0x20  # a row byte of the second record (ordinal 1)
    files[0].write_bytes(bytes(data))
    s = Server(copy)
    try:
        c = ReplayClient(s.url, token="", timeout_s=20)
        with pytest.raises(ReplayError, match="ordinal 1: HTTP 500: ordinal 1: the stored record is damaged, nothing of it is served: "
                                               "corrupt request record") as e:
            c.fetch(1)
        assert str(copy) not in str(e.value)
        assert c.fetch(0).shape[1] == 36, "the other records are served"
    finally:
        s.stop()


@live
def _first_of(client: ReplayClient, deadline_s: float = 10) -> Iterator[RequestInfo]:
    """A live follower that has taken its first record; retried while the server still counts a closed one."""
    deadline = time.monotonic() + deadline_s
    while True:
        follower = client.follow(read_timeout_s=10)
        try:
            assert next(follower).ordinal == 0
            return follower
        except ServerBusy:
            assert time.monotonic() < deadline, "a closed follower frees its place"
            time.sleep(0.1)


@live
def test_follow_streams_then_times_out_and_the_follower_bound_holds(client: ReplayClient, server: Server, oracle: List[dict]) -> None:
    n = len(oracle)
    first = list(client.follow(limit=n))
    assert [r.ordinal for r in first] == list(range(n))
    waiting = client.follow(read_timeout_s=1.0)
    assert len([next(waiting) for _ in range(n)]) == n
    with pytest.raises(TimeoutError, match="no new record within 1.0 s"):
        next(waiting)
    # --max-followers 2: two live followers, a third is refused with 503 until one leaves
    a = _first_of(client)
    b = _first_of(client)
    with pytest.raises(ServerBusy, match=r"HTTP 503: too many live followers \(at most 2, set by --max-followers\)"):
        next(client.follow())
    anonymous = ReplayClient(server.url, token="", timeout_s=20)
    with pytest.raises(Unauthorized):
        next(anonymous.follow())
    a.close()
    _first_of(client).close()
    b.close()
