package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.event.EngineEvent;

/** An event between the device stage and the sink stage: a capture in a ring slot, or a lifecycle event. */
sealed interface Staged permits RingSlot, StagedLifecycle {
    /** The engine event this stands for. */
    EngineEvent event();
}
