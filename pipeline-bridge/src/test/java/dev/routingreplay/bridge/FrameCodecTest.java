package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.buffer.ByteBuf;
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
                new SidecarMessage.Farewell(1, 2, 3));
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

    private static byte[] hex(String s) {
        String h = s.replace(" ", "");
        byte[] out = new byte[h.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
