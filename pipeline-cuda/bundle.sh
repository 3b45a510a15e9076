#!/usr/bin/env bash
# Builds what a GPU machine needs into the git-ignored folder bundle/ at the repository root: one shaded jar of
# everything (examples with the sink, the CUDA backend and their dependencies), the CUDA backend's test classes (the GPU
# tests and the GPU benchmark) with the JUnit console launcher and HdrHistogram, and a jlink'd JDK 17 runtime.
# Then, on the GPU machine (see docs/gpu.md):
#   bundle/jre/bin/java -jar bundle/junit-console.jar execute --class-path bundle/r3-bundle.jar:bundle/r3-gpu-tests.jar \
#     --select-package dev.routingreplay.cuda
set -euo pipefail
cd "$(dirname "$0")/.."
# builds in the reactor (-am): nothing is installed into ~/.m2
mvn -q -B -DskipTests -Pbundle package -pl examples -am
rm -rf bundle
mkdir -p bundle
cp examples/target/r3-bundle.jar bundle/
cp pipeline-cuda/target/pipeline-cuda-*-tests.jar bundle/r3-gpu-tests.jar
cp examples/target/bundle-tools/junit-console.jar examples/target/bundle-tools/hdrhistogram.jar bundle/
jlink_bin="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}/bin/jlink"
"$jlink_bin" --add-modules java.base,jdk.unsupported,java.naming,java.management,java.logging,java.xml,jdk.jfr,jdk.management,jdk.zipfs \
  --strip-debug --no-man-pages --no-header-files --compress=2 --output bundle/jre
bin/jvm-flags > bundle/jvm.flags
du -sh bundle bundle/jre bundle/r3-bundle.jar
# smoke: the bundled JRE and shaded jar can start the sidecar on a Unix socket (a shaded jar loses multi-release classes
# unless its manifest says Multi-Release: true; Reactor Netty's Java 17 socket support lives there)
smoke=$(mktemp -d)
bundle/jre/bin/java $(cat bundle/jvm.flags) -cp bundle/r3-bundle.jar dev.routingreplay.examples.R3Command sidecar \
  --socket "$smoke/r3.sock" --store "$smoke/store" --backend host --once > "$smoke/log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$smoke/log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
if ! grep -q "listening on" "$smoke/log"; then
  echo "bundle smoke failed: the sidecar did not listen:"; cat "$smoke/log"; rm -rf "$smoke"; exit 1
fi
rm -rf "$smoke"
echo "bundle smoke: r3 sidecar listens on a Unix socket"
# the folder is over the GPU machine's 64 MiB transfer since the Kafka client joined the jar: bundle.tar.xz (about
# 50 MiB) is what travels (carry it, and start the command with: tar -xJf bundle.tar.xz)
tar -cf - bundle | xz -T0 -6 > bundle.tar.xz
du -sh --apparent-size bundle.tar.xz
