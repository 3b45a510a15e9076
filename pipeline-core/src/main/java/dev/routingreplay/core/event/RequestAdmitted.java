package dev.routingreplay.core.event;

/**
 * A request entered the engine (or, admitted again while live, resumed after a preemption). Rows its finish gathers
 * must be written by a step after this admission, except for its first {@code cachedTokens} positions, which come
 * from the prefix cache and may have been written by an earlier request of the same round (docs/contract.md).
 *
 * @param requestId the engine's request id, unique among live requests
 * @param cachedTokens leading positions served from the prefix cache at this admission, as vLLM
 *     ({@code num_cached_tokens}) and SGLang ({@code cached_tokens}) report them; 0 when none
 */
public record RequestAdmitted(String requestId, int cachedTokens) implements EngineEvent {
    /** Rejects a null or empty id and a negative cached count. */
    public RequestAdmitted {
        RequestIds.check(requestId);
        if (cachedTokens < 0) {
            throw new IllegalArgumentException("request " + requestId + ": cachedTokens must not be negative, was " + cachedTokens);
        }
    }

    /** An admission with nothing from the prefix cache. */
    public RequestAdmitted(String requestId) {
        this(requestId, 0);
    }

    @Override
    public String describe() {
        return "admission of request " + requestId + (cachedTokens > 0 ? " (" + cachedTokens + " cached tokens)" : "");
    }
}
