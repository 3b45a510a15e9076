package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.Random;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;

/** CRC32C of concatenations, percent-encoding of ids, and the id table. */
class Crc32cTest {
    @Test
    void combiningTwoChecksumsEqualsTheChecksumOfTheConcatenation() {
        assertEquals(0xE3069283, Crc32c.of("123456789".getBytes(StandardCharsets.US_ASCII), 0, 9), "the CRC32C check value");
        Random random = new Random(7);
        for (int trial = 0; trial < 200; trial++) {
            byte[] bytes = new byte[random.nextInt(5000)];
            random.nextBytes(bytes);
            int split = bytes.length == 0 ? 0 : random.nextInt(bytes.length + 1);
            CRC32C whole = new CRC32C();
            whole.update(bytes);
            int combined = Crc32c.combine(Crc32c.of(bytes, 0, split), Crc32c.of(bytes, split, bytes.length - split), bytes.length - split);
            assertEquals((int) whole.getValue(), combined, "split " + split + " of " + bytes.length);
        }
        assertEquals("0000002a", Crc32c.hex(42));
    }

    @Test
    void idsTravelPercentEncodedAsOnePathSegment() {
        for (String id : new String[] {"a", "b/c d+é?", "%41", "日本語-🎉", "~._-"}) {
            String encoded = PathSegments.encode(id);
            assertEquals(-1, encoded.indexOf('/'), encoded);
            assertEquals(id, PathSegments.decode(encoded));
        }
        assertEquals("a+b", PathSegments.decode("a+b"), "a plus is a plus in a path");
        assertEquals(null, PathSegments.decode("%4"));
        assertEquals(null, PathSegments.decode("%zz"));
        assertEquals(null, PathSegments.decode("%FF"));
    }

    @Test
    void theIdTableFindsEveryOrdinalOfAHashNewestFirstAndDropsDeletedOnes() {
        IdTable table = new IdTable();
        for (long o = 0; o < 100_000; o++) {
            table.add(RequestRecords.idHash(new byte[] {(byte) (o % 1000), (byte) (o % 1000 >> 8)}, 0, 2), o);
        }
        long[] found = table.candidates(RequestRecords.idHash(new byte[] {7, 0}, 0, 2));
        assertEquals(100, found.length);
        assertEquals(99_007, found[0]);
        assertEquals(7, found[99]);
        table.retainFrom(99_000);
        assertArrayEquals(new long[] {99_007}, table.candidates(RequestRecords.idHash(new byte[] {7, 0}, 0, 2)));
        assertEquals(1000, table.size());
        table.shift(5);
        assertArrayEquals(new long[] {99_012}, table.candidates(RequestRecords.idHash(new byte[] {7, 0}, 0, 2)));
        assertEquals(2048 * 8, table.bytes(), "1000 entries at most half full: 2048 slots of 8 bytes");
    }
}
