package dev.routingreplay.core.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * Finds a row that names one expert twice in one layer (a real top-k never does; a mis-shaped or corrupted buffer,
 * or padding rows of zeros, do). One array of {@code numExperts} ints, stamped per layer checked, so a check allocates
 * nothing and clears nothing. Ids outside {@code [0, numExperts)} are the pack's to find and are not looked at. One
 * thread (the slot store's).
 */
final class DuplicateExperts {
    private final RoutingDtype dtype;
    private final int layers;
    private final int topK;
    /** For each expert, the check (one per layer) in which it was last seen. */
    private final int[] seenIn;
    private int check;

    DuplicateExperts(RoutingShape shape) {
        this.dtype = shape.dtype();
        this.layers = shape.moeLayers();
        this.topK = shape.topK();
        this.seenIn = new int[shape.numExperts()];
    }

    /** Whether the row at {@code rowOffset} of {@code row} (compact dtype) names one expert twice in a layer. */
    boolean in(ByteBuffer row, int rowOffset) {
        int idBytes = dtype.bytes();
        for (int l = 0; l < layers; l++) {
            if (++check == 0) { // wrapped: forget every earlier check
                Arrays.fill(seenIn, 0);
                check = 1;
            }
            int base = rowOffset + l * topK * idBytes;
            for (int k = 0; k < topK; k++) {
                int id = dtype.read(row, base + k * idBytes);
                if (id >= 0 && id < seenIn.length) {
                    if (seenIn[id] == check) {
                        return true;
                    }
                    seenIn[id] = check;
                }
            }
        }
        return false;
    }
}
