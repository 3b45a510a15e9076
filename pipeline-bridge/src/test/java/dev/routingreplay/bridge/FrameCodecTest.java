package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The wire format: every message round-trips byte-exact, and every malformed body is refused naming message and field. */
class FrameCodecTest {
    private static final EngineMessage.ExportedBuffer BUFFER = new EngineMessage.ExportedBuffer("/tmp/e.buf".getBytes(StandardCharsets.UTF_8),
            64, 1 << 20, new byte[] {1, 2, 3}, -1L, 4096, new byte[64]);

    static List<EngineMessage> engineMessages() {
        return List.of(
                new EngineMessage.Hello(1, 1, 3, 58, 8, 256, 8, 4, 8192, "vLLM-0.11 ünïcode", List.of(BUFFER, BUFFER)),
                new EngineMessage.Step(-2L, 63, 4_000_000_000L),
                new EngineMessage.Step(5L, 1, 2, new byte[] {1, 0, 0, 0, -1, -1, -1, -1}),
                new EngineMessage.Step(6L, 0, 0, new byte[0]),
                new EngineMessage.Admitted("req-1"),
                new EngineMessage.Finished("req-1", new int[] {5, -1, Integer.MAX_VALUE}),
                new EngineMessage.Aborted("req-2"),
                new EngineMessage.SlotsMoved(new int[] {1, 2}, new int[] {3, 4}),
                new EngineMessage.RoundCleared(Long.MIN_VALUE),
                new EngineMessage.Goodbye());
    }

    @Test
    void engineMessagesRoundTripThroughTheNettyFrameDecoder() {
        EmbeddedChannel channel = new EmbeddedChannel(FrameCodec.frameDecoder(), new EngineMessageDecoder());
        ByteBuf all = Unpooled.buffer();
        for (EngineMessage m : engineMessages()) {
            FrameCodec.encode(m, all);
        }
        // one byte at a time: frames split anywhere are reassembled
        while (all.isReadable()) {
            channel.writeInbound(all.readRetainedSlice(1));
        }
        all.release();
        for (EngineMessage expected : engineMessages()) {
            assertEquals(expected, (Object) channel.readInbound());
        }
        assertEquals(null, (Object) channel.readInbound());
        channel.finishAndReleaseAll();
    }

    @Test
    void sidecarMessagesRoundTrip() {
        List<SidecarMessage> messages = List.of(new SidecarMessage.Consumed(7, 3), new SidecarMessage.Failed(3, "expert id 300 ..."),
                new SidecarMessage.Farewell(1, 2, 3), new SidecarMessage.RequestError(1, "r-7", "request id 'r-7' finished but not live"));
        for (SidecarMessage m : messages) {
            ByteBuf b = Unpooled.buffer();
            FrameCodec.encode(m, b);
            assertEquals(b.readableBytes() - 4, b.readIntLE());
            assertEquals(m, FrameCodec.decodeSidecar(b));
        }
        SidecarMessage.Welcome w = new SidecarMessage.Welcome(1, 1, List.of(new byte[64], new byte[] {9}), "/data/r3");
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(w, b);
        b.skipBytes(4);
        SidecarMessage.Welcome back = (SidecarMessage.Welcome) FrameCodec.decodeSidecar(b);
        assertEquals("/data/r3", back.store());
        assertArrayEquals(new byte[] {9}, back.consumedEventHandles().get(1));
        ByteBuf consumed = Unpooled.buffer();
        FrameCodec.encodeConsumed(7, 3, consumed);
        ByteBuf viaRecord = Unpooled.buffer();
        FrameCodec.encode(new SidecarMessage.Consumed(7, 3), viaRecord);
        assertEquals(viaRecord, consumed, "the per-step fast path writes the same bytes");
    }

    @Test
    void aStepIsFifteenBytesLittleEndian() {
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(new EngineMessage.Step(0x0102030405060708L, 0x0A0B, 0x11223344), b);
        byte[] bytes = new byte[b.readableBytes()];
        b.readBytes(bytes);
        assertArrayEquals(new byte[] {15, 0, 0, 0, 2, 8, 7, 6, 5, 4, 3, 2, 1, 0x0B, 0x0A, 0x44, 0x33, 0x22, 0x11}, bytes);
    }

    @Test
    void anAdmissionWithCachedTokensIsTypeTenWithTheCountAfterTheIdAndWithoutIsTypeThree() {
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(new EngineMessage.Admitted("ab", 0x01020304L), b);
        assertArrayEquals(new byte[] {9, 0, 0, 0, 10, 2, 0, 'a', 'b', 4, 3, 2, 1}, ByteBufUtil.getBytes(b));
        b.skipBytes(4);
        assertEquals(new EngineMessage.Admitted("ab", 0x01020304L), FrameCodec.decodeEngine(b));
        b.clear();
        FrameCodec.encode(new EngineMessage.Admitted("ab", 0), b);
        assertArrayEquals(new byte[] {5, 0, 0, 0, 3, 2, 0, 'a', 'b'}, ByteBufUtil.getBytes(b));
        b.skipBytes(4);
        assertEquals(new EngineMessage.Admitted("ab"), FrameCodec.decodeEngine(b));
        b.release();
    }

    @Test
    void aRequestErrorIsType105WithCodeIdAndMessage() {
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(new SidecarMessage.RequestError(0x0201, "r", "m"), b);
        assertArrayEquals(new byte[] {9, 0, 0, 0, 105, 1, 2, 1, 0, 'r', 1, 0, 'm'}, ByteBufUtil.getBytes(b));
        b.release();
    }

    @Test
    void aStepWithSlotsIsTypeNineWithTheSlotBytesAfterStepsFields() {
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(new EngineMessage.Step(1, 2, 1, new byte[] {7, 0, 0, 0}), b);
        byte[] bytes = new byte[b.readableBytes()];
        b.readBytes(bytes);
        assertArrayEquals(new byte[] {19, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 7, 0, 0, 0}, bytes);
    }

    @ParameterizedTest(name = "{1}")
    @CsvSource(delimiter = '|', value = {
        "                        | empty frame",
        "2a                      | unknown message type 42",
        "02 01 02                | STEP: truncated at field step_id (needs 8 bytes, 2 left)",
        "02 0000000000000000 01  | STEP: truncated at field buffer (needs 2 bytes, 1 left)",
        "02 0000000000000000 0000 010000 | STEP: truncated at field tokens (needs 4 bytes, 3 left)",
        "02 0000000000000000 0000 01000000 ff | STEP: 1 bytes after the last field",
        "03 0500 6162         | ADMITTED: truncated at field request_id (needs 5 bytes, 2 left)",
        "03 01                   | ADMITTED: truncated at field request_id length (needs 2 bytes, 1 left)",
        "04 0100 61 02000000 01000000 | FINISHED: truncated at field slot (needs 8 bytes, 4 left)",
        "04 0100 61 ffffffff     | FINISHED: truncated at field slot (needs 17179869180 bytes, 0 left)",
        "06 01000000 01000000    | SLOTS_MOVED: truncated at field destination (needs 4 bytes, 0 left)",
        "05 0200 c328            | ABORTED: field request_id is not valid UTF-8",
        "07 0102                 | ROUND_CLEARED: truncated at field round (needs 8 bytes, 2 left)",
        "01 0100                 | HELLO: truncated at field backend (needs 1 bytes, 0 left)",
        "01 0100 00 0000         | HELLO: truncated at field device (needs 4 bytes, 2 left)",
        "01 0100 00 00000000 0200 0200 10000000 04 08 08000000 0100 0000 | HELLO: truncated at field buffer[0].routing_handle length (needs 2 bytes, 0 left)",
    })
    void malformedBodiesNameTheMessageAndField(String hex, String expected) {
        byte[] body = hex == null ? new byte[0] : hex(hex);
        ProtocolException e = assertThrows(ProtocolException.class, () -> FrameCodec.decodeEngine(Unpooled.wrappedBuffer(body)));
        assertEquals(FailureCode.PROTOCOL, e.code());
        assertTrue(e.getMessage().startsWith(expected), e.getMessage());
    }

    @Test
    void aFrameOverSixteenMibIsAProtocolErrorInTheStream() {
        EmbeddedChannel channel = new EmbeddedChannel(FrameCodec.frameDecoder(), new EngineMessageDecoder());
        ByteBuf ok = Unpooled.buffer();
        FrameCodec.encode(new EngineMessage.Goodbye(), ok);
        channel.writeInbound(ok);
        channel.writeInbound(Unpooled.buffer().writeIntLE(FrameCodec.MAX_BODY_BYTES + 1).writeByte(2));
        assertEquals(new EngineMessage.Goodbye(), (Object) channel.readInbound());
        Object error = channel.readInbound();
        assertTrue(error instanceof ProtocolException p && p.getMessage().startsWith("frame too long"), String.valueOf(error));
        channel.finishAndReleaseAll();
    }

    @ParameterizedTest(name = "{1}")
    @CsvSource(delimiter = '|', value = {
        "                        | empty frame",
        "02                      | unknown message type 2 (sidecar messages are 101 to 105)",
        "66 0700000000000000     | CONSUMED: truncated at field buffer (needs 2 bytes, 0 left)",
        "66 0700000000000000 0300 00 | CONSUMED: 1 bytes after the last field",
        "65 0100 01 0100 4000 00 | WELCOME: truncated at field consumed_event_handle[0] (needs 64 bytes, 1 left)",
        "65 0100 01 0000 0100    | WELCOME: truncated at field store (needs 1 bytes, 0 left)",
        "67 0300 0200 c328       | FAILED: field message is not valid UTF-8",
        "68 0100000000000000 0200000000000000 | FAREWELL: truncated at field requests_finished (needs 8 bytes, 0 left)",
    })
    void malformedSidecarBodiesNameTheMessageAndField(String hex, String expected) {
        byte[] body = hex == null ? new byte[0] : hex(hex);
        ProtocolException e = assertThrows(ProtocolException.class, () -> FrameCodec.decodeSidecar(Unpooled.wrappedBuffer(body)));
        assertEquals(FailureCode.PROTOCOL, e.code());
        assertTrue(e.getMessage().startsWith(expected), e.getMessage());
    }

    @Test
    void sidecarFramesAreLittleEndianAtTheDocumentedOffsets() {
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(new SidecarMessage.Failed(0x0203, "é"), b);
        assertArrayEquals(new byte[] {7, 0, 0, 0, 103, 3, 2, 2, 0, (byte) 0xC3, (byte) 0xA9}, ByteBufUtil.getBytes(b));
        b.clear();
        FrameCodec.encode(new SidecarMessage.Farewell(0x0102, 3, 4), b);
        assertArrayEquals(new byte[] {25, 0, 0, 0, 104, 2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0},
                ByteBufUtil.getBytes(b));
        b.clear();
        FrameCodec.encode(new SidecarMessage.Welcome(1, 1, List.of(new byte[] {7}), "s"), b);
        assertArrayEquals(new byte[] {12, 0, 0, 0, 101, 1, 0, 1, 1, 0, 1, 0, 7, 1, 0, 's'}, ByteBufUtil.getBytes(b));
        b.release();
    }

    @Test
    void aHelloIsLittleEndianAtTheDocumentedOffsets() {
        EngineMessage.ExportedBuffer buffer = new EngineMessage.ExportedBuffer(new byte[] {9}, 0x10, 0x20, new byte[0], 0x30, 0x40, new byte[] {8});
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(new EngineMessage.Hello(1, 1, -2, 0x0102, 8, 0x01000000, 4, 8, 0x2000, "e", List.of(buffer)), b);
        byte[] expected = hex("4300 0000 01 0100 01 feffffff 0201 0800 00000001 04 08 00200000 0100 0100 65"
                + " 0100 09 1000000000000000 2000000000000000 0000 3000000000000000 4000000000000000 0100 08");
        assertArrayEquals(expected, ByteBufUtil.getBytes(b));
        b.release();
    }

    @Test
    void aBodyOfExactlySixteenMibPassesTheFrameDecoder() {
        EmbeddedChannel channel = new EmbeddedChannel(FrameCodec.frameDecoder(), new EngineMessageDecoder());
        int n = (FrameCodec.MAX_BODY_BYTES - 8) / 4; // 1 type + 2 + 1 id byte + 4 count + 4 x n
        int[] slots = new int[n];
        slots[n - 1] = 7;
        ByteBuf frame = Unpooled.buffer();
        FrameCodec.encode(new EngineMessage.Finished("r", slots), frame);
        channel.writeInbound(frame);
        assertEquals(new EngineMessage.Finished("r", slots), (Object) channel.readInbound());
        channel.finishAndReleaseAll();
    }

    @Test
    void encodingRefusesBodiesStringsAndBlobsPastTheirLimits() {
        ByteBuf b = Unpooled.buffer();
        // 1 type + 2 + 1 id byte + 4 count + 4 x n: exactly 16 MiB passes, 4 bytes more is refused
        int n = (FrameCodec.MAX_BODY_BYTES - 8) / 4;
        FrameCodec.encode(new EngineMessage.Finished("r", new int[n]), b);
        assertEquals(FrameCodec.MAX_BODY_BYTES, b.readIntLE());
        b.clear();
        IllegalArgumentException body = assertThrows(IllegalArgumentException.class,
                () -> FrameCodec.encode(new EngineMessage.Finished("r", new int[n + 1]), b));
        assertTrue(body.getMessage().contains("body of 16777220 bytes exceeds the 16777216-byte limit"), body.getMessage());
        b.clear();
        FrameCodec.encode(new EngineMessage.Admitted("x".repeat(0xFFFF)), b);
        assertEquals(1 + 2 + 0xFFFF, b.readIntLE());
        b.clear();
        IllegalArgumentException string = assertThrows(IllegalArgumentException.class,
                () -> FrameCodec.encode(new EngineMessage.Admitted("x".repeat(0x10000)), b));
        assertTrue(string.getMessage().startsWith("string of 65536 UTF-8 bytes exceeds 65535"), string.getMessage());
        b.clear();
        FrameCodec.encode(new SidecarMessage.Welcome(1, 0, List.of(new byte[0xFFFF]), ""), b);
        b.clear();
        IllegalArgumentException blob = assertThrows(IllegalArgumentException.class,
                () -> FrameCodec.encode(new SidecarMessage.Welcome(1, 0, List.of(new byte[0x10000]), ""), b));
        assertEquals("blob of 65536 bytes exceeds 65535", blob.getMessage());
        b.release();
    }

    @Test
    void failureCodesAreTheDocumentedNumbers() {
        assertEquals(List.of(1, 2, 3, 4), java.util.Arrays.stream(FailureCode.values()).map(FailureCode::code).toList());
        for (FailureCode c : FailureCode.values()) {
            assertEquals(c, FailureCode.of(c.code()));
        }
        IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class, () -> FailureCode.of(5));
        assertEquals("unknown failure code 5", unknown.getMessage());
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(new SidecarMessage.Failed(FailureCode.PIPELINE.code(), ""), b);
        assertEquals(3, b.getUnsignedShortLE(5), "FAILED carries code 3 for a pipeline failure");
        b.release();
    }

    private static byte[] hex(String s) {
        String h = s.replace(" ", "");
        byte[] out = new byte[h.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
