package dev.routingreplay.core.testing;

/** The deterministic "gate" of tests: an expert id from (request, position, layer, k). */
public final class Routing {
    private Routing() {
    }

    /**
     * An id in {@code [0, numExperts)}: a well-mixed base from (request, position, layer), plus {@code k}, so the top-k
     * of a layer are distinct experts as a real gate's are (for {@code topK <= numExperts}).
     */
    public static int id(long request, int position, int layer, int k, int numExperts) {
        long h = request * 0x9E3779B97F4A7C15L + position * 0xC2B2AE3D27D4EB4FL + layer * 0x165667B19E3779F9L;
        h ^= h >>> 31;
        h *= 0x94D049BB133111EBL;
        h ^= h >>> 29;
        return (int) ((Math.floorMod(h, (long) numExperts) + k) % numExperts);
    }
}
