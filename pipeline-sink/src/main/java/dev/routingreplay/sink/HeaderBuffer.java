package dev.routingreplay.sink;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A reusable little-endian heap buffer for the fixed part of an excerpt (record type, ids, counts), grown when an
 * excerpt needs more and never shrunk, so that steady-state writes do not allocate.
 *
 * <p>Threading: the sink thread only.
 */
final class HeaderBuffer {
    private byte[] bytes = new byte[256];
    private ByteBuffer buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);

    /** The buffer, cleared, holding at least {@code size} bytes. */
    ByteBuffer clear(int size) {
        if (bytes.length < size) {
            bytes = new byte[Math.max(size, bytes.length * 2)];
            buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        }
        buffer.clear();
        return buffer;
    }

    /** The array behind the buffer {@link #clear} returned last (its bytes up to the buffer's position). */
    byte[] array() {
        return bytes;
    }
}
