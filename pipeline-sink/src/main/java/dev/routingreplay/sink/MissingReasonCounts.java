package dev.routingreplay.sink;

import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.RequestRouting;
import java.util.EnumMap;
import java.util.Map;

/** A record's missing rows counted per reason over a range of positions, as the listing and the {@code .npy} headers say them. */
final class MissingReasonCounts {
    private MissingReasonCounts() {
    }

    /** {@code {"reason":count,...}} of the missing rows among positions {@code [from, to)}, in reason order. */
    static String json(RequestRouting routing, int from, int to) {
        StringBuilder b = new StringBuilder("{");
        for (Map.Entry<MissingReason, Integer> e : counts(routing, from, to).entrySet()) {
            b.append(b.length() > 1 ? "," : "").append('"').append(e.getKey().label()).append("\":").append(e.getValue());
        }
        return b.append('}').toString();
    }

    /** {@code reason=count,...} of the missing rows among positions {@code [from, to)} (empty when none), for a header. */
    static String header(RequestRouting routing, int from, int to) {
        StringBuilder b = new StringBuilder();
        for (Map.Entry<MissingReason, Integer> e : counts(routing, from, to).entrySet()) {
            b.append(b.length() > 0 ? "," : "").append(e.getKey().label()).append('=').append(e.getValue());
        }
        return b.toString();
    }

    private static Map<MissingReason, Integer> counts(RequestRouting routing, int from, int to) {
        Map<MissingReason, Integer> counts = new EnumMap<>(MissingReason.class);
        if (routing.missingRowCount() > 0) {
            for (int p = from; p < to; p++) {
                MissingReason why = routing.missingReason(p);
                if (why != null) {
                    counts.merge(why, 1, Integer::sum);
                }
            }
        }
        return counts;
    }
}
