package dev.routingreplay.core.sink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.routingreplay.core.RoutingShape;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

class RequestRoutingTest {
    @Test
    void conversionsAgreeWithTheBytes() {
        RoutingShape shape = new RoutingShape(2, 3, 1000);
        ByteBuffer rows = ByteBuffer.allocate(2 * shape.rowBytes()).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 12; i++) {
            rows.putShort(i * 2, (short) (900 + i));
        }
        RequestRouting r = new RequestRouting("r", shape, 2, rows);
        assertArrayEquals(new int[] {2, 2, 3}, r.dims());
        assertEquals(905, r.id(0, 1, 2));
        assertEquals(911, r.toArray()[1][1][2]);
        assertEquals(906L, r.toLongArray()[6]);
        assertEquals(900 + 7, r.toIntArray()[7]);
        assertThrows(IndexOutOfBoundsException.class, () -> r.id(2, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new RequestRouting("r", shape, 3, rows));
    }
}
