package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.event.EngineEvent;

/** A lifecycle event (no ring slot) on its way to the sink stage. */
record StagedLifecycle(EngineEvent event) implements Staged {
}
