package dev.routingreplay.core;

import java.nio.ByteBuffer;

/**
 * The compact integer type that stored routing ids use: the smallest that holds every id {@code 0..numExperts-1}.
 *
 * <p>No value is reserved: every value of the type is an expert id (DeepSeek-V3's 256 experts fit {@link #UINT8}, and
 * 255 is expert 255). A row that was not recorded is marked out of band, per row (the slot store's missing state and
 * the request record's row-coverage bitmap), never by an id value. Stores written before this rule (store format 2,
 * request records up to version 3) reserved the largest value as a sentinel: {@link #legacyForExperts} and
 * {@link #legacySentinel} describe them, for readers only.
 */
public enum RoutingDtype {
    /** One unsigned byte per id; up to 256 experts. */
    UINT8(1, "uint8", "|u1"),
    /** Two unsigned bytes per id (little endian on disk); up to 65536 experts. */
    UINT16(2, "uint16", "<u2"),
    /** Four bytes per id, signed; for models with more than 65536 experts. */
    INT32(4, "int32", "<i4");

    private final int bytes;
    private final String numpyName;
    private final String numpyDescr;

    RoutingDtype(int bytes, String numpyName, String numpyDescr) {
        this.bytes = bytes;
        this.numpyName = numpyName;
        this.numpyDescr = numpyDescr;
    }

    /** The smallest dtype that holds ids {@code 0..numExperts-1}: uint8 up to 256 experts, uint16 up to 65536, else int32. */
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

    /**
     * The dtype a store of format 2 (request records up to version 3) used for {@code numExperts}: the smallest that
     * holds the ids plus a sentinel, uint8 up to 255 experts, uint16 up to 65535, else int32. Readers of old stores
     * only.
     */
    public static RoutingDtype legacyForExperts(int numExperts) {
        if (numExperts <= 0) {
            throw new IllegalArgumentException("numExperts must be positive, was " + numExperts);
        }
        if (numExperts < UINT8.maxExperts()) {
            return UINT8;
        }
        if (numExperts < UINT16.maxExperts()) {
            return UINT16;
        }
        return INT32;
    }

    /** Bytes per stored id. */
    public int bytes() {
        return bytes;
    }

    /**
     * The value that marked "no expert" in stores of format 2 (records up to version 3), as {@link #read} returns it:
     * the type's largest value ({@code 255}, {@code 65535}; {@code -1} for int32). Never written any more.
     */
    public int legacySentinel() {
        switch (this) {
            case UINT8:
                return 0xFF;
            case UINT16:
                return 0xFFFF;
            default:
                return -1;
        }
    }

    /** The number of distinct expert ids this dtype holds ({@code 256}, {@code 65536}, {@code Integer.MAX_VALUE}). */
    public int maxExperts() {
        switch (this) {
            case UINT8:
                return 0x100;
            case UINT16:
                return 0x10000;
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
