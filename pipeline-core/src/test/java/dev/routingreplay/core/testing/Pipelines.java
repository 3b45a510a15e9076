package dev.routingreplay.core.testing;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.RoutingSink;

/** Pipeline builders for tests. */
public final class Pipelines {
    private Pipelines() {
    }

    /** A pipeline over {@code device} into {@code sink} with the given ring. */
    public static CapturePipeline of(RoutingDevice device, RoutingSink sink, int depth, int maxTokens) {
        return CapturePipeline.builder().name("test").device(device).sink(sink).ringDepth(depth).maxTokensPerStep(maxTokens).build();
    }

    /** A small uint16 shape: 3 layers, top 2 of 300 experts. */
    public static RoutingShape smallUint16() {
        return new RoutingShape(3, 2, 300);
    }
}
