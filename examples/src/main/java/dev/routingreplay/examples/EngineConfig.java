package dev.routingreplay.examples;

import dev.routingreplay.core.RoutingShape;

/**
 * What the simulated engine does. Every feature can be switched off to test it alone.
 *
 * @param shape routing shape of the simulated model
 * @param requests requests in all (rounded up to whole prompt groups)
 * @param concurrency most live requests at once
 * @param samplesPerPrompt requests per prompt (GRPO group size); they share the prompt's KV blocks when prefix caching is on
 * @param promptMin shortest prompt, tokens
 * @param promptMax longest prompt, tokens
 * @param outputMin fewest generated tokens
 * @param outputMax most generated tokens
 * @param blockSize KV-cache block size
 * @param gpuBlocks KV blocks on the GPU tier
 * @param hostBlocks KV blocks on the host tier (swap target); slots of both tiers share one id space
 * @param maxTokensPerStep token budget of one forward pass (prefill chunks fill it)
 * @param prefillChunk most prompt tokens of one request per step (chunked prefill)
 * @param draftTokens speculative draft tokens per decode step (0 = off)
 * @param prefixCaching reuse full prompt blocks of earlier samples of the same prompt
 * @param preemptionRate chance per step that a request is preempted and later recomputed
 * @param swapRate chance per step that a request's blocks are swapped to the host tier (and back later)
 * @param abortRate chance per step that a request is aborted
 * @param rounds RL rounds; each ends with a clear
 * @param seed random seed; the same seed gives the same event stream
 */
public record EngineConfig(RoutingShape shape, int requests, int concurrency, int samplesPerPrompt, int promptMin, int promptMax,
        int outputMin, int outputMax, int blockSize, int gpuBlocks, int hostBlocks, int maxTokensPerStep, int prefillChunk,
        int draftTokens, boolean prefixCaching, double preemptionRate, double swapRate, double abortRate, int rounds, long seed) {

    /** Most requests of one configuration: rounding up to whole prompt groups must not overflow an int. */
    public static final int MAX_REQUESTS = 1_000_000_000;

    /** Validates every field, naming the bad one. */
    public EngineConfig {
        positive("requests", requests);
        if (requests > MAX_REQUESTS) {
            throw new IllegalArgumentException("requests must be at most " + MAX_REQUESTS + ", was " + requests);
        }
        positive("concurrency", concurrency);
        positive("samplesPerPrompt", samplesPerPrompt);
        positive("promptMin", promptMin);
        positive("outputMin", outputMin);
        positive("blockSize", blockSize);
        positive("gpuBlocks", gpuBlocks);
        positive("prefillChunk", prefillChunk);
        positive("rounds", rounds);
        if (promptMax < promptMin || outputMax < outputMin) {
            throw new IllegalArgumentException("promptMax/outputMax must not be below promptMin/outputMin");
        }
        if (hostBlocks < 0 || draftTokens < 0) {
            throw new IllegalArgumentException("hostBlocks and draftTokens must not be negative");
        }
        if (maxTokensPerStep < draftTokens + 8) {
            throw new IllegalArgumentException("maxTokensPerStep=" + maxTokensPerStep + " is too small for draftTokens=" + draftTokens);
        }
        int longest = promptMax + outputMax;
        if ((long) gpuBlocks * blockSize < longest + (long) blockSize * 2) {
            throw new IllegalArgumentException("gpuBlocks=" + gpuBlocks + " x blockSize=" + blockSize
                    + " cannot hold one request of " + longest + " tokens");
        }
        if ((long) (gpuBlocks + hostBlocks) * blockSize > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("too many slots");
        }
    }

    private static void positive(String name, int value) {
        if (value <= 0) {
            throw new IllegalArgumentException(name + " must be positive, was " + value);
        }
    }

    /** Slots of both tiers. */
    public int slotCapacity() {
        return (gpuBlocks + hostBlocks) * blockSize;
    }

    /**
     * Defaults for {@code shape}: every feature on, sized to finish in seconds; the KV pool grows with {@code concurrency}.
     *
     * @throws IllegalArgumentException naming the value when a field is out of range or the pool would not fit an int
     */
    public static EngineConfig defaults(RoutingShape shape, int requests, int concurrency, long seed) {
        int promptMax = 512;
        int outputMax = 256;
        long blocks = Math.max(64L, (long) concurrency * (promptMax + outputMax) / 16 / 2);
        if (blocks + blocks / 4 > Integer.MAX_VALUE / 16) {
            throw new IllegalArgumentException("concurrency=" + concurrency + " needs a KV pool of " + (blocks + blocks / 4) * 16
                    + " slots, more than " + Integer.MAX_VALUE);
        }
        int gpuBlocks = (int) blocks;
        return new EngineConfig(shape, requests, concurrency, 4, 16, promptMax, 8, outputMax, 16, gpuBlocks, gpuBlocks / 4, 2048, 512,
                3, true, 0.01, 0.01, 0.005, 2, seed);
    }

    /** A copy with the given features switched. */
    public EngineConfig withFeatures(int draftTokens, boolean prefixCaching, double preemptionRate, double swapRate, double abortRate) {
        return new EngineConfig(shape, requests, concurrency, samplesPerPrompt, promptMin, promptMax, outputMin, outputMax, blockSize,
                gpuBlocks, hostBlocks, maxTokensPerStep, prefillChunk, draftTokens, prefixCaching, preemptionRate, swapRate, abortRate,
                rounds, seed);
    }
}
