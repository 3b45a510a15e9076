package dev.routingreplay.core;

import java.nio.ByteBuffer;

/**
 * The compact integer type that stored routing ids use.
 *
 * <p>Each dtype reserves its largest value as a sentinel ({@link #sentinel()}) that means "no expert"
 * (a padding row, or an id the pack rejected). A dtype therefore holds expert ids
 * {@code 0 .. maxExperts()-1}. DeepSeek-V3 has exactly 256 routed experts, so it needs {@link #UINT16}:
 * we keep the sentinel because it lets every reader tell an unwritten id from expert 0 or 255.
 */
public enum RoutingDtype {
    /** One unsigned byte per id; up to 255 experts. */
    UINT8(1, "uint8", "|u1"),
    /** Two unsigned bytes per id (little endian on disk); up to 65535 experts. */
    UINT16(2, "uint16", "<u2"),
    /** Four bytes per id, signed; for models with more than 65535 experts. */
    INT32(4, "int32", "<i4");

    private final int bytes;
    private final String numpyName;
    private final String numpyDescr;

    RoutingDtype(int bytes, String numpyName, String numpyDescr) {
        this.bytes = bytes;
        this.numpyName = numpyName;
        this.numpyDescr = numpyDescr;
    }

    /** The smallest dtype that holds ids {@code 0..numExperts-1} plus the sentinel. */
    public static RoutingDtype forExperts(int numExperts) {
        if (numExperts <= 0) {
            throw new IllegalArgumentException("numExperts must be positive, was " + numExperts);
        }
        if (numExperts <= UINT8.maxExperts()) {
            return UINT8;
        }
        if (numExperts <= UINT16.maxExperts()) {
            return UINT16;
        }
        return INT32;
    }

    /** Bytes per stored id. */
    public int bytes() {
        return bytes;
    }

    /** The value that marks "no expert" in this dtype, as the unsigned int a reader gets back. */
    public int sentinel() {
        switch (this) {
            case UINT8:
                return 0xFF;
            case UINT16:
                return 0xFFFF;
            default:
                return -1;
        }
    }

    /** The number of distinct expert ids this dtype can hold next to its sentinel. */
    public int maxExperts() {
        switch (this) {
            case UINT8:
                return 0xFF;
            case UINT16:
                return 0xFFFF;
            default:
                return Integer.MAX_VALUE;
        }
    }

    /** numpy's name for this dtype ({@code uint8}, {@code uint16}, {@code int32}). */
    public String numpyName() {
        return numpyName;
    }

    /** numpy's {@code descr} string for this dtype in little-endian byte order. */
    public String numpyDescr() {
        return numpyDescr;
    }

    /** Reads the id at byte offset {@code offset} of {@code buffer} (absolute, buffer's byte order). */
    public int read(ByteBuffer buffer, int offset) {
        switch (this) {
            case UINT8:
                return buffer.get(offset) & 0xFF;
            case UINT16:
                return buffer.getShort(offset) & 0xFFFF;
            default:
                return buffer.getInt(offset);
        }
    }

    /** Writes {@code id} at byte offset {@code offset} of {@code buffer} (absolute, buffer's byte order). */
    public void write(ByteBuffer buffer, int offset, int id) {
        switch (this) {
            case UINT8:
                buffer.put(offset, (byte) id);
                break;
            case UINT16:
                buffer.putShort(offset, (short) id);
                break;
            default:
                buffer.putInt(offset, id);
        }
    }
}
