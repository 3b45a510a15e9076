package dev.routingreplay.bridge;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RoutingSink;

/**
 * The one sink of a server, opened through its {@link SinkFactory} by the first HELLO accepted and handed to every
 * later session whose shape matches. Sessions run one at a time, so {@link #acquire} is called from one feed thread
 * at a time; it is synchronized only against {@link #close}.
 */
final class SharedSink {
    private final SinkFactory factory;
    private RoutingSink sink;
    private RoutingShape shape;
    private long maxTokens;
    private boolean closed;

    SharedSink(SinkFactory factory) {
        this.factory = factory;
    }

    /**
     * The sink for a session of {@code shape} with up to {@code maxTokens} tokens a step, opening it on first use.
     *
     * @throws ProtocolException (code 2) when the shape differs from the sink's, the tokens exceed what it was opened
     *     for, or the factory failed
     */
    synchronized RoutingSink acquire(RoutingShape shape, long maxTokens) {
        if (closed) {
            throw new ProtocolException(FailureCode.BUSY, "the sidecar is shutting down");
        }
        if (sink == null) {
            try {
                sink = factory.open(shape, (int) maxTokens);
            } catch (RuntimeException e) {
                throw new ProtocolException(FailureCode.HELLO, "HELLO: the store for " + shape.describe() + " cannot be opened: "
                        + e.getMessage(), e);
            }
            this.shape = shape;
            this.maxTokens = maxTokens;
            return sink;
        }
        if (!this.shape.equals(shape)) {
            throw new ProtocolException(FailureCode.HELLO, "HELLO: layers=" + shape.moeLayers() + " top_k=" + shape.topK() + " num_experts="
                    + shape.numExperts() + " do not match the store's shape " + this.shape.describe() + " (set by the first engine)");
        }
        if (maxTokens > this.maxTokens) {
            throw new ProtocolException(FailureCode.HELLO, "HELLO: max_tokens=" + maxTokens + " exceeds the store's " + this.maxTokens
                    + " tokens a step (set by the first engine)");
        }
        return sink;
    }

    /** Closes the sink if one was opened and it is {@link AutoCloseable}; later acquires are refused. */
    synchronized void close() throws Exception {
        closed = true;
        if (sink instanceof AutoCloseable c) {
            sink = null;
            c.close();
        }
    }
}
