"""Starting and stopping ``r3 sidecar``, and reading a store back through ``r3 export`` (.npy + manifest.tsv).

``--sidecar-cmd`` is a shell command line (so ``$(cat bundle/jvm.flags)`` works), e.g. on the GPU machine
``bundle/jre/bin/java $(cat bundle/jvm.flags) -cp bundle/r3-bundle.jar dev.routingreplay.examples.R3Command sidecar``.
Unless it holds the placeholders ``{socket}``/``{store}``/``{backend}``, ``--socket S --store D --backend B --once``
is appended. The export command defaults to the same command with the word ``sidecar`` replaced by ``export``.
"""
from __future__ import annotations

import csv
import os
import shlex
import stat
import subprocess
import time
from pathlib import Path

import numpy as np


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


class SidecarProcess:
    def __init__(self, cmd: str, socket_path: Path, store_dir: Path, backend: str, log_path: Path, extra_args: str = ""):
        self.cmd = cmd
        self.extra_args = extra_args
        self.socket_path = Path(socket_path)
        self.store_dir = Path(store_dir)
        self.backend = backend
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None

    def command_line(self) -> str:
        if any(p in self.cmd for p in ("{socket}", "{store}", "{backend}")):
            return self.cmd.format(socket=shlex.quote(str(self.socket_path)), store=shlex.quote(str(self.store_dir)),
                                   backend=self.backend) + (" " + self.extra_args if self.extra_args else "")
        return (f"{self.cmd} --socket {shlex.quote(str(self.socket_path))} --store {shlex.quote(str(self.store_dir))}"
                f" --backend {self.backend} --once" + (" " + self.extra_args if self.extra_args else ""))

    def start(self, timeout_s: float = 90.0) -> None:
        if self.socket_path.exists():
            self.socket_path.unlink()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        line = self.command_line()
        self._log = open(self.log_path, "wb")
        # exec: the shell becomes the JVM, so the pid we hold is the sidecar's own
        self.proc = subprocess.Popen(["bash", "-c", "exec " + line], stdout=self._log, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        while not _is_socket(self.socket_path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with status {self.proc.returncode} before opening "
                                   f"{self.socket_path}; command: {line}\n{self.log_tail()}")
            if time.monotonic() - t0 > timeout_s:
                self.stop(grace_s=5)
                raise RuntimeError(f"sidecar did not open {self.socket_path} within {timeout_s:.0f} s; command: {line}\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def rss_bytes(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            for ln in open(f"/proc/{self.proc.pid}/status"):
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1]) * 1024
        except OSError:
            return None
        return None

    def stop(self, grace_s: float = 60.0) -> int | None:
        """Waits for the sidecar to exit by itself (``--once``: after the engine's GOODBYE), then terminates it."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        finally:
            self._log.close()

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no sidecar log)"
        return "--- sidecar log (last lines) ---\n" + "\n".join(lines[-n:])


def default_export_cmd(sidecar_cmd: str) -> str:
    words = sidecar_cmd.split()
    for i in range(len(words) - 1, -1, -1):
        if words[i] == "sidecar":
            return " ".join(words[:i] + ["export"])
    raise ValueError(f"cannot derive the export command from --sidecar-cmd {sidecar_cmd!r} (no word 'sidecar'); "
                     "pass --export-cmd")


def export_store(export_cmd: str, store_dir: Path, out_dir: Path, timeout_s: float = 300.0) -> dict[str, np.ndarray]:
    """Runs ``<export_cmd> --store D --out O`` and loads every exported request: request id -> ``[seq_len, layers,
    top_k]`` array (the stored dtype, uint8 for up to 255 experts)."""
    line = f"{export_cmd} --store {shlex.quote(str(store_dir))} --out {shlex.quote(str(out_dir))}"
    res = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        raise RuntimeError(f"export failed with status {res.returncode}: {line}\n{res.stdout}\n{res.stderr}")
    out: dict[str, np.ndarray] = {}
    with open(Path(out_dir) / "manifest.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            rid = row["request_id"]
            arr = np.load(Path(out_dir) / row["file"])
            if rid in out:
                raise RuntimeError(f"request id {rid!r} exported twice (files {row['file']} and an earlier one)")
            out[rid] = arr
    return out
