package dev.routingreplay.core.testing;

/** The deterministic "gate" of tests: an expert id from (request, position, layer, k). */
public final class Routing {
    private Routing() {
    }

    /** A well-mixed id in {@code [0, numExperts)}. */
    public static int id(long request, int position, int layer, int k, int numExperts) {
        long h = request * 0x9E3779B97F4A7C15L + position * 0xC2B2AE3D27D4EB4FL + layer * 0x165667B19E3779F9L + k * 0x27D4EB2F165667C5L;
        h ^= h >>> 31;
        h *= 0x94D049BB133111EBL;
        h ^= h >>> 29;
        return (int) Math.floorMod(h, (long) numExperts);
    }
}
