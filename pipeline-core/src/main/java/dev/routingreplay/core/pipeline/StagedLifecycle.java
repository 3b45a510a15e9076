package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.event.EngineEvent;

/**
 * A lifecycle event (no ring slot) on its way to the sink stage.
 *
 * @param fault null, or why the event is refused as one request's fault (it then takes no effect and a
 *     {@link dev.routingreplay.core.event.RequestFault} is emitted in its place)
 */
record StagedLifecycle(EngineEvent event, String fault) implements Staged {
    StagedLifecycle(EngineEvent event) {
        this(event, null);
    }
}
