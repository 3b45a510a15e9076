"""This build's ``r3`` for the live tests: its class path, the JVM flags Chronicle Queue needs, and the java binary.

The class path is ``examples/target/classes`` plus the list Maven writes to ``examples/target/classpath.txt`` at
``package`` (``mvn -B -q -DskipTests -pl examples -am package``), so a test run by hand finds it as ``mvn verify`` does.
``R3_SIDECAR_CLASSPATH``, when set, overrides it; ``R3_JVM_FLAGS`` overrides the flags (default: the parent pom's
``r3.jvm.flags``) and ``JAVA`` (else ``$JAVA_HOME/bin/java``, else ``java`` on the path) the binary.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAIN = "dev.routingreplay.examples.R3Command"
LISTED = REPO / "examples" / "target" / "classpath.txt"
CLASSES = REPO / "examples" / "target" / "classes"
NO_CLASSPATH = ("no r3 class path: examples/target/classpath.txt or examples/target/classes is absent "
                "(build first: mvn -B -q -DskipTests -pl examples -am package)")

_FLAGS = ("--add-exports=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED "
          "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED "
          "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED -Dchronicle.analytics.disable=true "
          "-Dchronicle.announcer.disable=true")


def classpath() -> str | None:
    """The examples module's runtime class path, its classes first; None where the build has not written it."""
    override = os.environ.get("R3_SIDECAR_CLASSPATH")
    if override:
        return override
    if LISTED.is_file() and CLASSES.is_dir():
        return os.pathsep.join([str(CLASSES), LISTED.read_text().strip()])
    return None


def jvm_flags() -> list[str]:
    return os.environ.get("R3_JVM_FLAGS", _FLAGS).split()


def java() -> str:
    if os.environ.get("JAVA"):
        return os.environ["JAVA"]
    if os.environ.get("JAVA_HOME"):
        return str(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    return shutil.which("java") or "java"


def command(*args: str, xmx: str = "512m") -> list[str]:
    """``java <flags> -Xmx<xmx> -cp <class path> R3Command ARGS`` (the class path empty where there is none)."""
    return [java(), *jvm_flags(), f"-Xmx{xmx}", "-cp", classpath() or "", MAIN, *args]
