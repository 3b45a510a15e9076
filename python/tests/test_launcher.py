"""``bin/r3``, the launcher of this checkout: it finds Java 17+, adds Chronicle's JVM flags and runs the command line
built at ``package`` (examples/target/classes and classpath.txt). Skipped, saying why, when the checkout is not built."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
R3 = REPO / "bin" / "r3"

pytestmark = pytest.mark.timeout(120)


def built() -> bool:
    return (REPO / "examples" / "target" / "classpath.txt").is_file() and (REPO / "examples" / "target" / "classes").is_dir()


@pytest.mark.skipif(not built(), reason="examples/target/classpath.txt is absent: run mvn -B -DskipTests package first")
def test_every_command_answers_help_under_its_own_name() -> None:
    top = subprocess.run([str(R3), "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0, top.stderr
    assert top.stdout.startswith("Usage: r3 "), top.stdout
    for command in ("run", "verify", "export", "serve", "sidecar", "cluster-read"):
        done = subprocess.run([str(R3), command, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith(f"Usage: r3 {command} "), (command, done.stdout, done.stderr)


@pytest.mark.skipif(not built(), reason="examples/target/classpath.txt is absent: run mvn -B -DskipTests package first")
def test_a_bad_option_is_the_commands_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([str(R3), "verify", "--store", str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stderr.startswith("r3 verify: "), done.stderr


def test_without_java_it_says_so_in_one_line(tmp_path: Path) -> None:
    tools = tmp_path / "bin"  # a PATH with the shell tools the script uses, and no java
    tools.mkdir()
    for tool in ("readlink", "sed", "head", "cat"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    env = {"PATH": str(tools), "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run(["/bin/bash", str(R3), "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 127, done
    assert done.stderr.strip().splitlines() == ["r3: no java (looked at $JAVA_HOME, then the PATH); R3 needs Java 17 or newer"]
