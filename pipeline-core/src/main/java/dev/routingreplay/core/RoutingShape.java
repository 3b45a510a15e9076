package dev.routingreplay.core;

/**
 * The shape of one token's routing: {@code [moeLayers, topK]} expert ids, each below {@code numExperts}.
 *
 * <p>Guarantees: all three values are positive and {@code topK <= numExperts}; the compact dtype and the row
 * size follow from them and never change.
 *
 * @param moeLayers number of MoE layers that route (dense layers excluded)
 * @param topK experts chosen per token and layer
 * @param numExperts routed experts per layer (logical ids, before any expert-parallel remap)
 */
public record RoutingShape(int moeLayers, int topK, int numExperts) {

    /** Validates the fields, naming the first bad one. */
    public RoutingShape {
        if (moeLayers <= 0) {
            throw new IllegalArgumentException("moeLayers must be positive, was " + moeLayers);
        }
        if (topK <= 0) {
            throw new IllegalArgumentException("topK must be positive, was " + topK);
        }
        if (numExperts <= 0) {
            throw new IllegalArgumentException("numExperts must be positive, was " + numExperts);
        }
        if (topK > numExperts) {
            throw new IllegalArgumentException("topK=" + topK + " exceeds numExperts=" + numExperts);
        }
        if ((long) moeLayers * topK * RoutingDtype.forExperts(numExperts).bytes() > Integer.MAX_VALUE / 2) {
            throw new IllegalArgumentException("row of moeLayers=" + moeLayers + " x topK=" + topK + " is too large");
        }
    }

    /** The compact dtype ids are stored in. */
    public RoutingDtype dtype() {
        return RoutingDtype.forExperts(numExperts);
    }

    /** Ids per token: {@code moeLayers * topK}. */
    public int idsPerRow() {
        return moeLayers * topK;
    }

    /** Bytes per token in the compact dtype. */
    public int rowBytes() {
        return idsPerRow() * dtype().bytes();
    }

    /** Shape in the order trainers read it, e.g. {@code [58 layers, top 8 of 256 experts, uint16]}. */
    public String describe() {
        return "[" + moeLayers + " layers, top " + topK + " of " + numExperts + " experts, " + dtype().numpyName() + "]";
    }
}
