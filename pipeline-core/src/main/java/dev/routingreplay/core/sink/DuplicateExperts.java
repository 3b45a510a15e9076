package dev.routingreplay.core.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * Finds a row that names one expert twice in one layer (a real top-k never does; a mis-shaped or corrupted buffer,
 * or padding rows of zeros, do). Top 8 in uint8 or uint16 (DeepSeek-V3, Qwen3, GLM, Kimi K2) compares a layer's ids
 * as lanes of one or two 64-bit words; other shapes mark each id in one array of {@code numExperts} ints, stamped per
 * layer. A check allocates nothing and clears nothing. Ids outside {@code [0, numExperts)} are the pack's to find and are not looked at. One
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
        if (topK == 8 && dtype == RoutingDtype.UINT8) {
            for (int l = 0; l < layers; l++) {
                if (eightBytesRepeat(row.getLong(rowOffset + l * 8))) {
                    return true;
                }
            }
            return false;
        }
        if (topK == 8 && dtype == RoutingDtype.UINT16) {
            for (int l = 0; l < layers; l++) {
                int at = rowOffset + l * 16;
                if (eightShortsRepeat(row.getLong(at), row.getLong(at + 8))) {
                    return true;
                }
            }
            return false;
        }
        int idBytes = dtype.bytes();
        for (int l = 0; l < layers; l++) {
            int stamp = nextCheck();
            int base = rowOffset + l * topK * idBytes;
            for (int k = 0; k < topK; k++) {
                int id = dtype.read(row, base + k * idBytes);
                if (id >= 0 && id < seenIn.length) {
                    if (seenIn[id] == stamp) {
                        return true;
                    }
                    seenIn[id] = stamp;
                }
            }
        }
        return false;
    }

    private static final long ONES8 = 0x0101010101010101L;
    private static final long HIGHS8 = 0x8080808080808080L;
    private static final long ONES16 = 0x0001000100010001L;
    private static final long HIGHS16 = 0x8000800080008000L;

    /**
     * Whether two of the 8 bytes of {@code x} are equal: byte j of {@code x ^ rotl(x, 8d)} is zero exactly when bytes j
     * and j - d are equal, and distances 1 to 4 cover every pair (SWAR, no memory, no branch but the last).
     */
    static boolean eightBytesRepeat(long x) {
        long any = zeroByte(x ^ Long.rotateLeft(x, 8)) | zeroByte(x ^ Long.rotateLeft(x, 16)) | zeroByte(x ^ Long.rotateLeft(x, 24))
                | zeroByte(x ^ Long.rotateLeft(x, 32));
        return any != 0;
    }

    /** Whether two of the 8 16-bit lanes of {@code a} and {@code b} are equal: within each (distances 1, 2), and across (4 rotations). */
    static boolean eightShortsRepeat(long a, long b) {
        long any = zeroShort(a ^ Long.rotateLeft(a, 16)) | zeroShort(a ^ Long.rotateLeft(a, 32))
                | zeroShort(b ^ Long.rotateLeft(b, 16)) | zeroShort(b ^ Long.rotateLeft(b, 32))
                | zeroShort(a ^ b) | zeroShort(a ^ Long.rotateLeft(b, 16)) | zeroShort(a ^ Long.rotateLeft(b, 32))
                | zeroShort(a ^ Long.rotateLeft(b, 48));
        return any != 0;
    }

    /** Non-zero exactly when some byte of {@code v} is zero. */
    private static long zeroByte(long v) {
        return (v - ONES8) & ~v & HIGHS8;
    }

    /** Non-zero exactly when some 16-bit lane of {@code v} is zero. */
    private static long zeroShort(long v) {
        return (v - ONES16) & ~v & HIGHS16;
    }

    private int nextCheck() {
        if (++check == 0) { // wrapped: forget every earlier check
            Arrays.fill(seenIn, 0);
            check = 1;
        }
        return check;
    }
}
