#!/usr/bin/env bash
# Runs a JMH benchmark of a module's test sources: bench/jmh.sh MODULE BENCHMARK-REGEX [JMH options...]
# e.g. bench/jmh.sh pipeline-sink SinkBenchmark -prof gc -f 1 -wi 2 -i 3
set -euo pipefail
cd "$(dirname "$0")/.."
module=$1; shift
# builds in the reactor (-am): sibling modules come from their target/ folders, nothing is installed into ~/.m2
mvn -q -B -DskipTests -pl "$module" -am test-compile dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile=target/jmh.classpath
cp="$module/target/test-classes:$module/target/classes:$(cat "$module/target/jmh.classpath")"
flags=$(sed -n "s:.*<r3.jvm.flags>\(.*\)</r3.jvm.flags>.*:\1:p" pom.xml)
exec java $flags -cp "$cp" org.openjdk.jmh.Main -jvmArgsAppend "$flags" "$@"
