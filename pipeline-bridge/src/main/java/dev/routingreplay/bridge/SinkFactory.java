package dev.routingreplay.bridge;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RoutingSink;

/**
 * Opens the sink every session of a {@link SidecarServer} stores into. The server calls it once, at the first HELLO
 * it accepts, with that HELLO's shape and {@code max_tokens}; later HELLOs must match that shape and may not ask for
 * more tokens a step. The server owns the sink from then on: it closes it (when it is {@link AutoCloseable}) in
 * {@link SidecarServer#close()}, after the last session released it.
 */
@FunctionalInterface
public interface SinkFactory {
    /**
     * Opens a sink for rows of {@code shape} and steps of up to {@code maxStepTokens} tokens. Called on a session's
     * feed thread; may block (creating a store).
     *
     * @throws RuntimeException when the store cannot be opened (the engine is answered FAILED code 2 with its message)
     */
    RoutingSink open(RoutingShape shape, int maxStepTokens);
}
