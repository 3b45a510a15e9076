#!/usr/bin/env bash
# Builds what the GPU machine needs into the git-ignored folder bundle/ at the repository root: a shaded jar of
# pipeline-cuda (core, Reactor, Micrometer, JCuda driver natives, HdrHistogram) and a jlink'd JDK 17 runtime.
# Then, on the GPU machine:  bundle/jre/bin/java -cp bundle/r3-cuda-bundle.jar dev.routingreplay.cuda.GpuSelfTest
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -q -B -DskipTests install -pl pipeline-core
mvn -q -B -DskipTests -Pbundle package -pl pipeline-cuda
rm -rf bundle
mkdir -p bundle
cp pipeline-cuda/target/r3-cuda-bundle.jar bundle/
jlink_bin="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}/bin/jlink"
"$jlink_bin" --add-modules java.base,jdk.unsupported,java.naming,java.management,java.logging,jdk.jfr,jdk.management \
  --strip-debug --no-man-pages --no-header-files --compress=2 --output bundle/jre
du -sh bundle bundle/jre bundle/r3-cuda-bundle.jar
