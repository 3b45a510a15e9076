#!/usr/bin/env bash
# CPU of `r3 serve` with N idle follow=true listings: bench/idle-followers.sh [N] [SECONDS]
# Writes a small store with `r3 run`, serves it, opens N followers with curl, then samples the server's CPU time
# from /proc/<pid>/stat over SECONDS and prints it as % of one core, with the server's RSS. Needs Linux and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}; seconds=${2:-10}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mvn -q -B -pl examples -am package dependency:build-classpath -DskipTests -Dmdep.outputFile="$work/cp"  # examples is built last: its classpath stays
cp="examples/target/classes:$(cat "$work/cp")"
flags=$(sed -n "s:.*<r3.jvm.flags>\(.*\)</r3.jvm.flags>.*:\1:p" pom.xml)
java $flags -cp "$cp" dev.routingreplay.examples.R3Command run --requests 16 --model mixtral-8x7b --out "$work/store" >/dev/null
port=$((20000 + RANDOM % 20000))
java $flags -cp "$cp" dev.routingreplay.examples.R3Command serve --store "$work/store" --port $port --max-followers $((n + 10)) \
    >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/manifest" && break; sleep 0.2; done
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
sample() {  # label
    sleep 2
    local t0 t1 hz
    hz=$(getconf CLK_TCK); t0=$(ticks); sleep "$seconds"; t1=$(ticks)
    echo "$1: server CPU $(awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$seconds" 'BEGIN {printf "%.1f", 100 * d / hz / s}')% of one core," \
        "RSS $(awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$server/status"), threads $(ls "/proc/$server/task" | wc -l)"
}
sample "0 followers"
for _ in $(seq "$n"); do curl -s -N -o /dev/null "http://127.0.0.1:$port/requests?follow=true" & done
sample "$n idle followers"
