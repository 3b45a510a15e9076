package dev.routingreplay.bridge;

import io.netty.buffer.ByteBuf;
import io.netty.handler.codec.LengthFieldBasedFrameDecoder;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The bridge's wire format (docs/engine-bridge.md): a frame is {@code u32 body_length} then the body, {@code u8 type}
 * and the payload; integers little-endian; a string is {@code u16 length} + UTF-8, a blob {@code u16 length} + bytes;
 * a body is at most {@link #MAX_BODY_BYTES}.
 *
 * <p>Both directions are here, so a Java engine or a test can speak the engine's half. Decoders take one frame's
 * body (what {@link #frameDecoder()} emits: the length already stripped) and read it completely; a body that is
 * empty, truncated, has bytes left over, an unknown type or malformed UTF-8 is a {@link ProtocolException} with
 * code {@link FailureCode#PROTOCOL} naming the message type and the field. Encoders write a whole frame, length
 * included, into the given buffer. Stateless and thread-safe; decoding a STEP allocates only its record (a STEP_SLOTS also its slot bytes).
 */
public final class FrameCodec {
    /**
     * The protocol version this codec speaks: 3 (ADMITTED_CACHED, REQUEST_ERROR); versions 1 (without STEP_SLOTS) and 2
     * are still accepted from an engine.
     */
    public static final int VERSION = 3;
    /** The oldest protocol version a sidecar accepts in HELLO. */
    public static final int OLDEST_VERSION = 1;
    /** The largest body of a frame: 16 MiB. */
    public static final int MAX_BODY_BYTES = 16 << 20;

    static final int HELLO = 1;
    static final int STEP = 2;
    static final int ADMITTED = 3;
    static final int FINISHED = 4;
    static final int ABORTED = 5;
    static final int SLOTS_MOVED = 6;
    static final int ROUND_CLEARED = 7;
    static final int GOODBYE = 8;
    static final int STEP_SLOTS = 9;
    static final int ADMITTED_CACHED = 10;
    static final int WELCOME = 101;
    static final int CONSUMED = 102;
    static final int FAILED = 103;
    static final int FAREWELL = 104;
    static final int REQUEST_ERROR = 105;

    private FrameCodec() {
    }

    /**
     * A new Netty frame decoder for one connection: little-endian {@code u32} lengths, bodies up to
     * {@link #MAX_BODY_BYTES} (a longer one fails fast with a {@code TooLongFrameException}), length stripped.
     */
    public static LengthFieldBasedFrameDecoder frameDecoder() {
        return new LengthFieldBasedFrameDecoder(ByteOrder.LITTLE_ENDIAN, MAX_BODY_BYTES + 4, 0, 4, 0, 4, true);
    }

    // ---------------------------------------------------------------- engine -> sidecar

    /**
     * Decodes one engine-to-sidecar frame body, reading it completely.
     *
     * @throws ProtocolException (code 1) naming the message and field when the body is malformed
     */
    public static EngineMessage decodeEngine(ByteBuf body) {
        if (!body.isReadable()) {
            throw new ProtocolException(FailureCode.PROTOCOL, "empty frame: a body holds at least the message type");
        }
        int type = body.readUnsignedByte();
        EngineMessage m;
        switch (type) {
            case STEP:
                m = new EngineMessage.Step(u64(body, "STEP", "step_id"), u16(body, "STEP", "buffer"), u32(body, "STEP", "tokens"));
                break;
            case HELLO:
                m = decodeHello(body);
                break;
            case ADMITTED:
                m = new EngineMessage.Admitted(string(body, "ADMITTED", "request_id"));
                break;
            case ADMITTED_CACHED: {
                String id = string(body, "ADMITTED_CACHED", "request_id");
                m = new EngineMessage.Admitted(id, u32(body, "ADMITTED_CACHED", "cached_tokens"));
                break;
            }
            case FINISHED: {
                String id = string(body, "FINISHED", "request_id");
                m = new EngineMessage.Finished(id, ints(body, "FINISHED", "slot", count(body, "FINISHED", "n")));
                break;
            }
            case ABORTED:
                m = new EngineMessage.Aborted(string(body, "ABORTED", "request_id"));
                break;
            case SLOTS_MOVED: {
                long n = count(body, "SLOTS_MOVED", "n");
                int[] sources = ints(body, "SLOTS_MOVED", "source", n);
                m = new EngineMessage.SlotsMoved(sources, ints(body, "SLOTS_MOVED", "destination", n));
                break;
            }
            case ROUND_CLEARED:
                m = new EngineMessage.RoundCleared(u64(body, "ROUND_CLEARED", "round"));
                break;
            case GOODBYE:
                m = new EngineMessage.Goodbye();
                break;
            case STEP_SLOTS: {
                long stepId = u64(body, "STEP_SLOTS", "step_id");
                int buffer = u16(body, "STEP_SLOTS", "buffer");
                long tokens = u32(body, "STEP_SLOTS", "tokens");
                byte[] slots = new byte[body.readableBytes()];
                body.readBytes(slots);
                m = new EngineMessage.Step(stepId, buffer, tokens, slots);
                break;
            }
            default:
                throw new ProtocolException(FailureCode.PROTOCOL, "unknown message type " + type + " (engine messages are 1 to 10)");
        }
        end(body, m.name());
        return m;
    }

    private static EngineMessage.Hello decodeHello(ByteBuf b) {
        String h = "HELLO";
        int version = u16(b, h, "version");
        int backend = u8(b, h, "backend");
        int device = i32(b, h, "device");
        int layers = u16(b, h, "layers");
        int topK = u16(b, h, "top_k");
        long experts = u32(b, h, "num_experts");
        int idBytes = u8(b, h, "id_bytes");
        int slotBytes = u8(b, h, "slot_bytes");
        long maxTokens = u32(b, h, "max_tokens");
        int n = u16(b, h, "buffers");
        String name = string(b, h, "engine_name");
        List<EngineMessage.ExportedBuffer> buffers = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            String f = "buffer[" + i + "].";
            buffers.add(new EngineMessage.ExportedBuffer(blob(b, h, f + "routing_handle"), u64(b, h, f + "routing_offset"),
                    u64(b, h, f + "routing_bytes"), blob(b, h, f + "slots_handle"), u64(b, h, f + "slots_offset"),
                    u64(b, h, f + "slots_bytes"), blob(b, h, f + "ready_event_handle")));
        }
        return new EngineMessage.Hello(version, backend, device, layers, topK, experts, idBytes, slotBytes, maxTokens, name, buffers);
    }

    /** Writes {@code message} as one frame (length, type, payload) into {@code out}. */
    public static void encode(EngineMessage message, ByteBuf out) {
        int start = begin(out);
        if (message instanceof EngineMessage.Step s) {
            out.writeByte(s.slots() == null ? STEP : STEP_SLOTS).writeLongLE(s.stepId()).writeShortLE(s.buffer()).writeIntLE((int) s.tokens());
            if (s.slots() != null) {
                out.writeBytes(s.slots());
            }
        } else if (message instanceof EngineMessage.Hello h) {
            out.writeByte(HELLO).writeShortLE(h.version()).writeByte(h.backend()).writeIntLE(h.deviceOrdinal()).writeShortLE(h.layers())
                    .writeShortLE(h.topK()).writeIntLE((int) h.numExperts()).writeByte(h.idBytes()).writeByte(h.slotBytes())
                    .writeIntLE((int) h.maxTokens()).writeShortLE(h.buffers().size());
            writeString(out, h.engineName());
            for (EngineMessage.ExportedBuffer b : h.buffers()) {
                writeBlob(out, b.routingHandle());
                out.writeLongLE(b.routingOffset()).writeLongLE(b.routingBytes());
                writeBlob(out, b.slotsHandle());
                out.writeLongLE(b.slotsOffset()).writeLongLE(b.slotsBytes());
                writeBlob(out, b.readyEventHandle());
            }
        } else if (message instanceof EngineMessage.Admitted a) {
            if (a.cachedTokens() == 0) {
                writeString(out.writeByte(ADMITTED), a.requestId());
            } else {
                writeString(out.writeByte(ADMITTED_CACHED), a.requestId()).writeIntLE((int) a.cachedTokens());
            }
        } else if (message instanceof EngineMessage.Finished f) {
            writeString(out.writeByte(FINISHED), f.requestId());
            writeInts(out.writeIntLE(f.slots().length), f.slots());
        } else if (message instanceof EngineMessage.Aborted a) {
            writeString(out.writeByte(ABORTED), a.requestId());
        } else if (message instanceof EngineMessage.SlotsMoved m) {
            out.writeByte(SLOTS_MOVED).writeIntLE(m.sources().length);
            writeInts(out, m.sources());
            writeInts(out, m.destinations());
        } else if (message instanceof EngineMessage.RoundCleared r) {
            out.writeByte(ROUND_CLEARED).writeLongLE(r.round());
        } else {
            out.writeByte(GOODBYE);
        }
        finish(out, start);
    }

    // ---------------------------------------------------------------- sidecar -> engine

    /** Writes {@code message} as one frame (length, type, payload) into {@code out}. */
    public static void encode(SidecarMessage message, ByteBuf out) {
        int start = begin(out);
        if (message instanceof SidecarMessage.Consumed c) {
            out.writeByte(CONSUMED).writeLongLE(c.stepId()).writeShortLE(c.buffer());
        } else if (message instanceof SidecarMessage.Welcome w) {
            out.writeByte(WELCOME).writeShortLE(w.version()).writeByte(w.backend()).writeShortLE(w.consumedEventHandles().size());
            for (byte[] handle : w.consumedEventHandles()) {
                writeBlob(out, handle);
            }
            writeString(out, w.store());
        } else if (message instanceof SidecarMessage.Failed f) {
            writeString(out.writeByte(FAILED).writeShortLE(f.code()), f.message());
        } else if (message instanceof SidecarMessage.Farewell f) {
            out.writeByte(FAREWELL).writeLongLE(f.steps()).writeLongLE(f.tokens()).writeLongLE(f.requestsFinished());
        } else if (message instanceof SidecarMessage.RequestError e) {
            writeString(writeString(out.writeByte(REQUEST_ERROR).writeShortLE(e.code()), e.requestId()), e.message());
        }
        finish(out, start);
    }

    /** Writes a CONSUMED frame without building its record: the per-step answer. */
    static void encodeConsumed(long stepId, int buffer, ByteBuf out) {
        out.writeIntLE(11).writeByte(CONSUMED).writeLongLE(stepId).writeShortLE(buffer);
    }

    /**
     * Decodes one sidecar-to-engine frame body, reading it completely.
     *
     * @throws ProtocolException (code 1) naming the message and field when the body is malformed
     */
    public static SidecarMessage decodeSidecar(ByteBuf body) {
        if (!body.isReadable()) {
            throw new ProtocolException(FailureCode.PROTOCOL, "empty frame: a body holds at least the message type");
        }
        int type = body.readUnsignedByte();
        SidecarMessage m;
        switch (type) {
            case CONSUMED:
                m = new SidecarMessage.Consumed(u64(body, "CONSUMED", "step_id"), u16(body, "CONSUMED", "buffer"));
                break;
            case WELCOME: {
                int version = u16(body, "WELCOME", "version");
                int backend = u8(body, "WELCOME", "backend");
                int n = u16(body, "WELCOME", "N");
                List<byte[]> handles = new ArrayList<>(n);
                for (int i = 0; i < n; i++) {
                    handles.add(blob(body, "WELCOME", "consumed_event_handle[" + i + "]"));
                }
                m = new SidecarMessage.Welcome(version, backend, handles, string(body, "WELCOME", "store"));
                break;
            }
            case FAILED:
                m = new SidecarMessage.Failed(u16(body, "FAILED", "code"), string(body, "FAILED", "message"));
                break;
            case FAREWELL:
                m = new SidecarMessage.Farewell(u64(body, "FAREWELL", "steps"), u64(body, "FAREWELL", "tokens"),
                        u64(body, "FAREWELL", "requests_finished"));
                break;
            case REQUEST_ERROR: {
                int code = u16(body, "REQUEST_ERROR", "code");
                String id = string(body, "REQUEST_ERROR", "request_id");
                m = new SidecarMessage.RequestError(code, id, string(body, "REQUEST_ERROR", "message"));
                break;
            }
            default:
                throw new ProtocolException(FailureCode.PROTOCOL, "unknown message type " + type + " (sidecar messages are 101 to 105)");
        }
        end(body, m.name());
        return m;
    }

    // ---------------------------------------------------------------- fields

    private static void need(ByteBuf b, String message, String field, long bytes) {
        if (b.readableBytes() < bytes) {
            throw new ProtocolException(FailureCode.PROTOCOL, message + ": truncated at field " + field + " (needs " + bytes + " bytes, "
                    + b.readableBytes() + " left)");
        }
    }

    private static void end(ByteBuf b, String message) {
        if (b.isReadable()) {
            throw new ProtocolException(FailureCode.PROTOCOL, message + ": " + b.readableBytes() + " bytes after the last field");
        }
    }

    private static int u8(ByteBuf b, String message, String field) {
        need(b, message, field, 1);
        return b.readUnsignedByte();
    }

    private static int u16(ByteBuf b, String message, String field) {
        need(b, message, field, 2);
        return b.readUnsignedShortLE();
    }

    private static int i32(ByteBuf b, String message, String field) {
        need(b, message, field, 4);
        return b.readIntLE();
    }

    private static long u32(ByteBuf b, String message, String field) {
        need(b, message, field, 4);
        return b.readUnsignedIntLE();
    }

    private static long u64(ByteBuf b, String message, String field) {
        need(b, message, field, 8);
        return b.readLongLE();
    }

    private static long count(ByteBuf b, String message, String field) {
        return u32(b, message, field);
    }

    private static int[] ints(ByteBuf b, String message, String field, long n) {
        need(b, message, field, n * 4);
        int[] out = new int[(int) n];
        for (int i = 0; i < out.length; i++) {
            out[i] = b.readIntLE();
        }
        return out;
    }

    private static byte[] blob(ByteBuf b, String message, String field) {
        int length = u16(b, message, field + " length");
        need(b, message, field, length);
        byte[] out = new byte[length];
        b.readBytes(out);
        return out;
    }

    private static String string(ByteBuf b, String message, String field) {
        int length = u16(b, message, field + " length");
        need(b, message, field, length);
        try {
            String s = StandardCharsets.UTF_8.newDecoder().decode(b.nioBuffer(b.readerIndex(), length)).toString();
            b.skipBytes(length);
            return s;
        } catch (CharacterCodingException e) {
            throw new ProtocolException(FailureCode.PROTOCOL, message + ": field " + field + " is not valid UTF-8", e);
        }
    }

    private static int begin(ByteBuf out) {
        int start = out.writerIndex();
        out.writeIntLE(0);
        return start;
    }

    private static void finish(ByteBuf out, int start) {
        int body = out.writerIndex() - start - 4;
        if (body > MAX_BODY_BYTES) {
            throw new IllegalArgumentException("message body of " + body + " bytes exceeds the " + MAX_BODY_BYTES + "-byte limit");
        }
        out.setIntLE(start, body);
    }

    private static ByteBuf writeString(ByteBuf out, String s) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        if (bytes.length > 0xFFFF) {
            throw new IllegalArgumentException("string of " + bytes.length + " UTF-8 bytes exceeds 65535: " + s.substring(0, 40) + "...");
        }
        return out.writeShortLE(bytes.length).writeBytes(bytes);
    }

    private static void writeBlob(ByteBuf out, byte[] bytes) {
        if (bytes.length > 0xFFFF) {
            throw new IllegalArgumentException("blob of " + bytes.length + " bytes exceeds 65535");
        }
        out.writeShortLE(bytes.length).writeBytes(bytes);
    }

    private static void writeInts(ByteBuf out, int[] values) {
        for (int v : values) {
            out.writeIntLE(v);
        }
    }
}
