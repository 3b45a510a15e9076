package dev.routingreplay.examples;

/**
 * The simulated gate: a deterministic expert id for every (token content, layer, k), so that a trainer can check
 * every stored id without having seen the rollout.
 *
 * <p>Requests come in GRPO-style groups: request {@code p<P>-L<len>-s<S>} is sample S of prompt P, whose prompt
 * has {@code len} tokens. Prompt positions have the same content in every sample, so their routing depends on the
 * prompt alone (which is what makes prefix-cache hits correct); generated positions depend on the request. A
 * rejected draft token gets a different routing, so a row of a rejected draft that was never overwritten is caught.
 */
public final class ExpertRouting {
    private ExpertRouting() {
    }

    /** A parsed request id. */
    public record RequestKey(long prompt, int promptLength, int sample) {
        /** The id string, {@code p<prompt>-L<promptLength>-s<sample>}. */
        public String id() {
            return "p" + prompt + "-L" + promptLength + "-s" + sample;
        }

        /** Parses an id made by {@link #id()}; the error names the id. */
        public static RequestKey parse(String requestId) {
            String[] parts = requestId.split("-");
            try {
                if (parts.length == 3 && parts[0].startsWith("p") && parts[1].startsWith("L") && parts[2].startsWith("s")) {
                    return new RequestKey(Long.parseLong(parts[0].substring(1)), Integer.parseInt(parts[1].substring(1)),
                            Integer.parseInt(parts[2].substring(1)));
                }
            } catch (NumberFormatException e) {
                // fall through to the error below
            }
            throw new IllegalArgumentException("request id '" + requestId + "' is not of the form p<prompt>-L<promptLength>-s<sample>");
        }
    }

    /** The id the gate picks for the token at {@code position} of the request. */
    public static int expectedId(RequestKey request, int position, int layer, int k, int numExperts) {
        return mix(contentKey(request, position), position, layer, k, numExperts);
    }

    /** The id a rejected draft token at {@code position} gets in step {@code stepId} (differs from the accepted one's). */
    public static int draftId(RequestKey request, long stepId, int position, int layer, int k, int numExperts) {
        return mix(draftKey(request, stepId), position, layer, k, numExperts);
    }

    /** The 64-bit key of the token at {@code position}: the prompt's for prompt positions, else the request's. */
    public static long contentKey(RequestKey request, int position) {
        return position < request.promptLength() ? promptKey(request.prompt()) : requestKey(request);
    }

    /** The 64-bit key of a rejected draft token of {@code request} in step {@code stepId}. */
    public static long draftKey(RequestKey request, long stepId) {
        return requestKey(request) ^ (stepId * 0x632BE59BD9B4E019L + 1);
    }

    private static long promptKey(long prompt) {
        return prompt * 0x9E3779B97F4A7C15L + 17;
    }

    private static long requestKey(RequestKey r) {
        return (r.prompt() * 0x9E3779B97F4A7C15L + 17) ^ ((r.sample() + 1L) * 0xD6E8FEB86659FD93L);
    }

    /**
     * The gate itself: an id in {@code [0, numExperts)} for choice {@code k}, a well-mixed base from a token key, its
     * position and the layer, plus {@code k} (modulo {@code numExperts}), so the top-k of one layer are distinct experts
     * as a real gate's are (the store reports a row naming one expert twice as missing). The CUDA backend's
     * {@code r3_keyed_routing} kernel computes exactly this, bit for bit.
     */
    public static int mix(long content, int position, int layer, int k, int numExperts) {
        long h = content + position * 0xC2B2AE3D27D4EB4FL + layer * 0x165667B19E3779F9L;
        h ^= h >>> 31;
        h *= 0x94D049BB133111EBL;
        h ^= h >>> 29;
        h *= 0xBF58476D1CE4E5B9L;
        h ^= h >>> 32;
        return (int) ((Math.floorMod(h, (long) numExperts) + k) % numExperts);
    }
}
