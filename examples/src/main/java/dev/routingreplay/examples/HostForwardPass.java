package dev.routingreplay.examples;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RoutingDevice;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** The forward pass on the CPU: computes every id and copies the routing to the device with {@link RoutingDevice#write}. */
final class HostForwardPass extends ForwardPass {
    private final ByteBuffer routingHost;

    HostForwardPass(RoutingDevice device, RoutingShape shape, int maxTokens) {
        super(device, shape, maxTokens);
        this.routingHost = ByteBuffer.allocateDirect(maxTokens * shape.idsPerRow() * 4).order(ByteOrder.nativeOrder());
    }

    @Override
    void writeRouting(int tokens, long[] keys, int[] positions) {
        int perRow = shape.idsPerRow();
        for (int t = 0; t < tokens; t++) {
            for (int l = 0; l < shape.moeLayers(); l++) {
                for (int k = 0; k < shape.topK(); k++) {
                    // padding: garbage the pipeline must skip
                    int id = positions[t] < 0 ? shape.numExperts() + PADDING_ID_OFFSET
                            : ExpertRouting.mix(keys[t], positions[t], l, k, shape.numExperts());
                    routingHost.putInt((t * perRow + l * shape.topK() + k) * 4, id);
                }
            }
        }
        device.write(routingMemory, 0, routingHost.duplicate().position(0).limit(tokens * perRow * 4));
    }
}
