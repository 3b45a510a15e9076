package dev.routingreplay.sink;

import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

/**
 * CRC32C ({@link CRC32C}, the Castagnoli polynomial, as iSCSI, ext4 and Python's {@code crc32c} package compute it) of
 * byte ranges, and {@link #combine}: the checksum of two concatenated ranges from the checksums of each. Combining lets
 * the request writer checksum a record's rows once and derive the whole excerpt's checksum from it, and lets the
 * server send the checksum of a whole {@code .npy} body without reading its rows again.
 *
 * <p>Threading: static and stateless; any thread.
 */
final class Crc32c {
    /** The reflected Castagnoli polynomial. */
    private static final int POLY = 0x82F63B78;

    private Crc32c() {
    }

    /** The CRC32C of {@code length} bytes of {@code bytes} from {@code offset}, as an unsigned 32-bit value. */
    static int of(byte[] bytes, int offset, int length) {
        CRC32C crc = new CRC32C();
        crc.update(bytes, offset, length);
        return (int) crc.getValue();
    }

    /** The CRC32C of {@code buffer}'s remaining bytes; its position is left as it was. */
    static int of(ByteBuffer buffer) {
        CRC32C crc = new CRC32C();
        crc.update(buffer.duplicate());
        return (int) crc.getValue();
    }

    /**
     * The CRC32C of {@code A ‖ B} from {@code crcA = crc32c(A)}, {@code crcB = crc32c(B)} and the length of B (zlib's
     * {@code crc32_combine}, with the Castagnoli polynomial): O(log lengthB), no access to the bytes.
     */
    static int combine(int crcA, int crcB, long lengthB) {
        if (lengthB <= 0) {
            return crcA;
        }
        int[] even = new int[32];
        int[] odd = new int[32];
        // the operator for one zero bit
        odd[0] = POLY;
        int row = 1;
        for (int n = 1; n < 32; n++) {
            odd[n] = row;
            row <<= 1;
        }
        square(even, odd); // two zero bits
        square(odd, even); // four zero bits
        int crc = crcA;
        long len = lengthB;
        do {
            // the first squaring makes the operator for one zero byte
            square(even, odd);
            if ((len & 1) != 0) {
                crc = times(even, crc);
            }
            len >>>= 1;
            if (len == 0) {
                break;
            }
            square(odd, even);
            if ((len & 1) != 0) {
                crc = times(odd, crc);
            }
            len >>>= 1;
        } while (len != 0);
        return crc ^ crcB;
    }

    private static int times(int[] matrix, int vector) {
        int sum = 0;
        int v = vector;
        for (int i = 0; v != 0; i++, v >>>= 1) {
            if ((v & 1) != 0) {
                sum ^= matrix[i];
            }
        }
        return sum;
    }

    private static void square(int[] square, int[] matrix) {
        for (int n = 0; n < 32; n++) {
            square[n] = times(matrix, matrix[n]);
        }
    }

    /** {@code crc} as 8 lower-case hex digits, as the server's headers and the listing write it. */
    static String hex(int crc) {
        String s = Integer.toHexString(crc);
        return "0".repeat(8 - s.length()) + s;
    }
}
