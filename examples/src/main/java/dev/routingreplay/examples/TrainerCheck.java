package dev.routingreplay.examples;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.examples.ExpertRouting.RequestKey;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * The trainer side of the example: checks every replayed request, position by position, against the simulated
 * gate ({@link ExpertRouting}), as a trainer would before replaying the routing.
 */
public final class TrainerCheck {
    private TrainerCheck() {
    }

    /**
     * What the check found.
     *
     * @param requests requests checked
     * @param tokens positions checked
     * @param bytes bytes of routing checked
     * @param mismatches ids that differ from the gate's
     * @param firstMismatch a description of the first mismatch, or null
     */
    public record Report(long requests, long tokens, long bytes, long mismatches, String firstMismatch) {
        /** Whether every id matched. */
        public boolean ok() {
            return mismatches == 0;
        }

        Report plus(RequestRouting r, long bad, String first) {
            return new Report(requests + 1, tokens + r.seqLen(), bytes + (long) r.seqLen() * r.shape().rowBytes(), mismatches + bad,
                    firstMismatch != null ? firstMismatch : first);
        }

        /** One line for the summary. */
        public String describe() {
            return String.format("verified %d requests, %d tokens, %.1f MB: %s", requests, tokens, bytes / 1e6,
                    ok() ? "all routing matches" : mismatches + " mismatching ids, first: " + firstMismatch);
        }
    }

    /** Checks each request of {@code replay} for the model {@code shape}; emits the report when the replay completes. */
    public static Mono<Report> verify(Flux<RequestRouting> replay, RoutingShape shape) {
        return replay.reduce(new Report(0, 0, 0, 0, null), (report, r) -> {
            if (!r.shape().equals(shape)) {
                return report.plus(r, 1, r.requestId() + ": shape " + r.shape().describe() + " but the model has " + shape.describe());
            }
            RequestKey key = RequestKey.parse(r.requestId());
            long bad = 0;
            String first = null;
            int[] ids = r.toIntArray();
            int i = 0;
            for (int p = 0; p < r.seqLen(); p++) {
                for (int l = 0; l < shape.moeLayers(); l++) {
                    for (int k = 0; k < shape.topK(); k++, i++) {
                        int expected = ExpertRouting.expectedId(key, p, l, k, shape.numExperts());
                        if (ids[i] != expected) {
                            if (bad++ == 0) {
                                first = r.requestId() + " position " + p + " layer " + l + " k " + k + ": expected " + expected
                                        + ", stored " + ids[i] + (r.isMissing(p) ? " (a missing row: " + r.missingReason(p) + ")" : "");
                            }
                        }
                    }
                }
            }
            return report.plus(r, bad, first);
        });
    }
}
