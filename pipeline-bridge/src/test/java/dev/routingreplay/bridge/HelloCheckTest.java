package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * {@link HelloCheck} without a server: every bound is accepted exactly at its limit and refused one past it, with
 * code 2 naming the field and its value. The HELLO is 2 layers x top 2 of 16 experts, 4-byte ids, 8-byte slots, 8
 * tokens: routing needs 128 bytes, slots 64.
 */
class HelloCheckTest {
    private static final EngineMessage.ExportedBuffer GOOD = buffer(0, 128, 0, 64);

    private static EngineMessage.ExportedBuffer buffer(long routingOffset, long routingBytes, long slotsOffset, long slotsBytes) {
        return new EngineMessage.ExportedBuffer(new byte[] {1}, routingOffset, routingBytes, new byte[] {2}, slotsOffset, slotsBytes, new byte[0]);
    }

    private static EngineMessage.Hello hello(int backend, int device, int layers, int topK, long experts, int idBytes, int slotBytes,
            long maxTokens, List<EngineMessage.ExportedBuffer> buffers) {
        return new EngineMessage.Hello(FrameCodec.VERSION, backend, device, layers, topK, experts, idBytes, slotBytes, maxTokens, "unit", buffers);
    }

    private static EngineMessage.Hello host(List<EngineMessage.ExportedBuffer> buffers) {
        return hello(0, 0, 2, 2, 16, 4, 8, 8, buffers);
    }

    private static void refused(EngineMessage.Hello h, Backend backend, int device, String... parts) {
        ProtocolException e = assertThrows(ProtocolException.class, () -> HelloCheck.check(h, backend, device));
        assertEquals(FailureCode.HELLO, e.code(), e::getMessage);
        assertTrue(e.getMessage().startsWith("HELLO: "), e.getMessage());
        for (String part : parts) {
            assertTrue(e.getMessage().contains(part), "names '" + part + "': " + e.getMessage());
        }
    }

    @Test
    void aHelloAtEveryLimitIsAcceptedAndReturnsItsShape() {
        assertEquals(new RoutingShape(2, 2, 16), HelloCheck.check(host(List.of(GOOD)), Backend.HOST, 0));
        assertEquals(new RoutingShape(2, 2, 16), HelloCheck.check(hello(0, -1, 2, 2, 16, 4, 8, 8, List.of(GOOD)), Backend.HOST, 5),
                "the host backend takes device -1 whatever the sidecar's ordinal");
        assertEquals(new RoutingShape(2, 2, 16), HelloCheck.check(hello(1, 3, 2, 2, 16, 4, 8, 8, List.of(GOOD)), Backend.CUDA, 3));
        assertEquals(new RoutingShape(1, 1, 1), HelloCheck.check(hello(0, 0, 1, 1, 1, 8, 4, 1, List.of(buffer(0, 8, 0, 4))), Backend.HOST, 0),
                "one layer, top 1 of 1 expert, one token: 8-byte ids, 4-byte slots");
        assertEquals(new RoutingShape(2, 2, 16), HelloCheck.check(host(Collections.nCopies(HelloCheck.MAX_BUFFERS, GOOD)), Backend.HOST, 0));
        assertEquals(new RoutingShape(2, 16, 16), HelloCheck.check(hello(0, 0, 2, 16, 16, 4, 8, 1, List.of(buffer(0, 128, 0, 8))),
                Backend.HOST, 0), "top_k equal to num_experts");
        long offset = Long.MAX_VALUE;
        assertEquals(new RoutingShape(2, 2, 16), HelloCheck.check(host(List.of(buffer(offset, Long.MAX_VALUE, offset, Long.MAX_VALUE))),
                Backend.HOST, 0), "offsets and sizes up to 2^63 - 1");
        assertEquals(new RoutingShape(2, 2, (int) Integer.MAX_VALUE),
                HelloCheck.check(hello(0, 0, 2, 2, Integer.MAX_VALUE, 4, 8, 8, List.of(GOOD)), Backend.HOST, 0));
    }

    @Test
    void theDeviceMustBeTheSidecarsOnCudaAndZeroOrMinusOneOnTheHost() {
        refused(hello(1, 2, 2, 2, 16, 4, 8, 8, List.of(GOOD)), Backend.CUDA, 3, "device=2", "cuda device 3");
        refused(hello(0, 1, 2, 2, 16, 4, 8, 8, List.of(GOOD)), Backend.HOST, 1, "device=1", "host backend (device 0 or -1)");
        refused(hello(0, -2, 2, 2, 16, 4, 8, 8, List.of(GOOD)), Backend.HOST, 0, "device=-2");
        refused(hello(0, 0, 2, 2, 16, 4, 8, 8, List.of(GOOD)), Backend.CUDA, 0, "backend=0 (host)", "cuda backend");
    }

    @Test
    void theShapeAndMaxTokensAreRefusedOnePastTheirLimits() {
        refused(hello(0, 0, 0, 2, 16, 4, 8, 8, List.of(GOOD)), Backend.HOST, 0, "layers=0 must be positive");
        refused(hello(0, 0, 2, 0, 16, 4, 8, 8, List.of(GOOD)), Backend.HOST, 0, "top_k=0 must be positive");
        refused(hello(0, 0, 2, 2, 0, 4, 8, 8, List.of(GOOD)), Backend.HOST, 0, "num_experts=0 is not in 1..2147483647");
        refused(hello(0, 0, 2, 2, 1L << 31, 4, 8, 8, List.of(GOOD)), Backend.HOST, 0, "num_experts=2147483648 is not in 1..");
        refused(hello(0, 0, 2, 17, 16, 4, 8, 8, List.of(GOOD)), Backend.HOST, 0, "top_k=17 exceeds num_experts=16");
        refused(hello(0, 0, 2, 2, 16, 4, 8, 1L << 31, List.of(GOOD)), Backend.HOST, 0, "max_tokens=2147483648 is not in 1..");
        refused(host(Collections.nCopies(HelloCheck.MAX_BUFFERS + 1, GOOD)), Backend.HOST, 0, "buffers=65 is not in 1..64");
        refused(hello(0, 0, 65535, 65535, 1 << 20, 4, 8, 8, List.of(GOOD)), Backend.HOST, 0, "layers=65535 top_k=65535 num_experts=1048576",
                "too large");
    }

    @Test
    void eachBufferIsCheckedForSizeAndOffsetNamingItsIndex() {
        refused(host(List.of(GOOD, buffer(0, 127, 0, 64))), Backend.HOST, 0, "buffer[1].routing_bytes=127 is too small",
                "max_tokens=8 x layers=2 x top_k=2 x id_bytes=4 needs 128");
        refused(host(List.of(GOOD, GOOD, buffer(0, 128, 0, 63))), Backend.HOST, 0, "buffer[2].slots_bytes=63 is too small",
                "max_tokens=8 x slot_bytes=8 needs 64");
        refused(hello(0, 0, 2, 2, 16, 8, 8, 8, List.of(GOOD)), Backend.HOST, 0, "buffer[0].routing_bytes=128 is too small", "needs 256");
        refused(hello(0, 0, 2, 2, 16, 4, 4, 8, List.of(buffer(0, 128, 0, 31))), Backend.HOST, 0, "buffer[0].slots_bytes=31", "needs 32");
        refused(host(List.of(buffer(-1, 128, 0, 64))), Backend.HOST, 0, "buffer[0].routing_offset=18446744073709551615 is out of range");
        refused(host(List.of(buffer(0, 128, Long.MIN_VALUE, 64))), Backend.HOST, 0, "buffer[0].slots_offset=9223372036854775808");
        refused(host(List.of(buffer(0, -1, 0, 64))), Backend.HOST, 0, "buffer[0].routing_bytes=18446744073709551615 is out of range");
        refused(host(List.of(buffer(0, 128, 0, Long.MIN_VALUE))), Backend.HOST, 0, "buffer[0].slots_bytes=9223372036854775808 is out of range");
    }
}
