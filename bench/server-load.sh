#!/usr/bin/env bash
# Load run of `r3 serve` (issue 11, item 8): bench/server-load.sh [REQUESTS] [CLIENTS] [SECONDS]
# Writes REQUESTS DeepSeek-V3 requests of 32,768 positions each into a new store, serves it with `r3 serve` in its own
# JVM on loopback, then runs ServerLoadRun (a second JVM, Reactor Netty's HTTP client) with CLIENTS fetches in flight
# for SECONDS per query: whole requests, a pipeline-parallel rank's layer slice, and a new turn (start) as int64.
# Prints requests/s, MB/s and p50/p99 per query, and the server's RSS (now and peak). Bounded in count and time.
# SERVER_HEAP (e.g. 512m) caps the server's Java heap (-Xmx); without it the JVM's default (a quarter of the memory).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-16}; clients=${2:-16}; seconds=${3:-20}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mvn -q -B -DskipTests -pl examples -am test-compile dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$work/cp"
cp="examples/target/test-classes:examples/target/classes:$(cat "$work/cp")"
flags=$(sed -n "s:.*<r3.jvm.flags>\(.*\)</r3.jvm.flags>.*:\1:p" pom.xml)
java $flags -cp "$cp" dev.routingreplay.examples.bench.ServerLoadRun store "$work/store" "$requests"
port=$((20000 + RANDOM % 20000))
java $flags ${SERVER_HEAP:+-Xmx$SERVER_HEAP} -cp "$cp" dev.routingreplay.examples.R3Command serve --store "$work/store" --port $port >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 150); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.2; done
rss() { awk '/VmRSS/ {r=$2} /VmHWM/ {h=$2} /RssAnon/ {a=$2} /RssFile/ {f=$2} END {printf "server RSS %.0f MB (anonymous %.0f MB, mapped files %.0f MB; peak %.0f MB)", r / 1024, a / 1024, f / 1024, h / 1024}' "/proc/$server/status"; }
echo "before load: $(rss)"
for query in "" "layers=0:8" "layers=29:58&dtype=int32" "start=31744&dtype=int64"; do
    java $flags -cp "$cp" dev.routingreplay.examples.bench.ServerLoadRun load "http://127.0.0.1:$port" "$clients" "$seconds" "$query"
    echo "  $(rss)"
done
