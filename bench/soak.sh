#!/usr/bin/env bash
# A soak of the main job with heap, RSS and store size sampled: bench/soak.sh SECONDS-BETWEEN-SAMPLES [r3 run options]
# e.g. bench/soak.sh 10 --model deepseek-v3 --requests 60000
# Builds in the reactor (nothing installed), runs `r3 run` into a temporary store, and every SECONDS prints one
# tab-separated line: elapsed s, RSS MB, heap used MB (after the last GC, from jcmd GC.heap_info), heap committed MB,
# store MB, finished requests (from the job's progress line). At the end: the job's exit status and its last lines.
set -euo pipefail
cd "$(dirname "$0")/.."
every=${1:-10}; shift || true
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mvn -q -B -pl examples -am package dependency:build-classpath -DskipTests -Dmdep.outputFile="$work/cp"
cp="examples/target/classes:$(cat "$work/cp")"
flags=$(sed -n "s:.*<r3.jvm.flags>\(.*\)</r3.jvm.flags>.*:\1:p" pom.xml)
java $flags -Xmx1g -cp "$cp" dev.routingreplay.examples.R3Command run --out "$work/store" --progress-ms 1000 "$@" >"$work/run.log" 2>&1 &
job=$!
start=$(date +%s)
printf 'elapsed_s\trss_mb\theap_used_mb\theap_committed_mb\tstore_mb\tfinished\n'
while kill -0 "$job" 2>/dev/null; do
    sleep "$every"
    kill -0 "$job" 2>/dev/null || break
    rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$job/status" 2>/dev/null || true)
    heap=$(jcmd "$job" GC.heap_info 2>/dev/null | awk '/garbage-first heap|def new generation|total/ && /used/ {
        for (i = 1; i <= NF; i++) { if ($i == "total") t = $(i+1); if ($i == "used") u = $(i+1) } } END {
        gsub(/[K,]/, "", t); gsub(/[K,]/, "", u); printf "%.0f\t%.0f", u / 1024, t / 1024 }' || true)
    store=$(du -sm "$work/store" 2>/dev/null | cut -f1 || true)
    finished=$(grep -o 'finished [0-9]*' "$work/run.log" | tail -1 | cut -d' ' -f2 || true)
    printf '%s\t%s\t%s\t%s\t%s\n' "$(( $(date +%s) - start ))" "$rss" "$heap" "$store" "${finished:--}"
done
wait "$job" && status=0 || status=$?
echo "exit status: $status"
tail -5 "$work/run.log"
