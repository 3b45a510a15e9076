package dev.routingreplay.bridge.testing;

import dev.routingreplay.bridge.SidecarMessage;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.host.HostDeviceBuffer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The engine's half of the bridge protocol in Java, for tests: a client of the sidecar's Unix domain socket on the
 * host backend, whose N buffers are regions of one temp file it maps read-write (the sidecar maps them read-only).
 * Frames are written and read with plain little-endian {@link ByteBuffer}s, independently of the sidecar's codec.
 *
 * <p>It keeps the handshake's rule: before writing buffer {@code b} again it waits for {@code CONSUMED} of the
 * buffer's previous step (the time it waits is counted). A reader thread decodes the sidecar's messages; with
 * {@link #overwriteAfterConsumed}, it overwrites a buffer with garbage the moment its CONSUMED arrives. One thread
 * drives the engine.
 */
public final class FakeEngine implements AutoCloseable {
    private static final Duration WAIT = Duration.ofSeconds(60);

    /**
     * What HELLO announces.
     *
     * @param layers MoE layers
     * @param topK ids per token and layer
     * @param experts routed experts
     * @param idBytes 4 or 8
     * @param slotBytes 4 or 8
     * @param maxTokens tokens a buffer holds
     * @param buffers N
     */
    public record Spec(int layers, int topK, int experts, int idBytes, int slotBytes, int maxTokens, int buffers) {
        /** Bytes of one buffer's routing. */
        public long routingBytes() {
            return (long) maxTokens * layers * topK * idBytes;
        }

        /** Bytes of one buffer's slots. */
        public long slotsBytes() {
            return (long) maxTokens * slotBytes;
        }
    }

    private final SocketChannel channel;
    private final Thread reader;
    private final BlockingQueue<SidecarMessage> inbox = new LinkedBlockingQueue<>();
    private final Object consumedLock = new Object();
    private final AtomicLong bytesSent = new AtomicLong();
    private Spec spec;
    private Path bufferFile;
    private MappedByteBuffer mapped;
    private long stride;
    private long[] lastStepOf;
    private long[] consumedStepOf;
    private long nextStep;
    private long consumedWaitNanos;
    private long maxConsumedWaitNanos;
    private volatile boolean overwrite;
    private volatile boolean closedBySidecar;
    private volatile SidecarMessage.Failed failed;
    private boolean version3;
    private final List<SidecarMessage.RequestError> requestErrors = new ArrayList<>();
    private volatile SidecarMessage.Farewell farewell;
    private long sentSteps;
    private long sentTokens;
    private long sentFinished;
    private boolean slotsInSteps;

    private FakeEngine(SocketChannel channel) {
        this.channel = channel;
        this.reader = new Thread(this::read, "fake-engine-reader");
        reader.setDaemon(true);
        reader.start();
    }

    /** Connects to the sidecar at {@code socket}, waiting up to 30 s for the socket to appear. */
    public static FakeEngine connect(Path socket) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            try {
                SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                ch.connect(UnixDomainSocketAddress.of(socket));
                return new FakeEngine(ch);
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw new UncheckedIOException("cannot connect to " + socket, e);
                }
                sleep(20);
            }
        }
    }

    // ---------------------------------------------------------------- handshake

    /**
     * From now on: HELLO says version 2, and every step goes as STEP_SLOTS with the slots its writer wrote, after which
     * the buffer's slots are overwritten with garbage (so a sidecar that read the engine's slots buffer would fail).
     */
    public FakeEngine sendingSlotsInSteps() {
        slotsInSteps = true;
        return this;
    }

    /** From now on: HELLO says version 3 (REQUEST_ERROR answers), steps as {@link #sendingSlotsInSteps} says. */
    public FakeEngine speakingVersion3() {
        version3 = true;
        return this;
    }

    /**
     * Creates the buffer file for {@code spec} under {@code dir} and sends HELLO with its regions (version 1, or 2 with
     * slots in steps, or 3 after {@link #speakingVersion3}).
     */
    public void sendHello(Spec spec, Path dir, String name) {
        sendHello(spec, dir, name, version3 ? 3 : slotsInSteps ? 2 : 1, 0, 0);
    }

    /** As {@link #sendHello(Spec, Path, String)} with an explicit version, backend and device, and the routing size shortened by {@code shortBy} bytes. */
    public void sendHello(Spec spec, Path dir, String name, int version, int backend, long shortBy) {
        this.spec = spec;
        this.stride = (spec.routingBytes() + spec.slotsBytes() + 63) / 64 * 64;
        try {
            bufferFile = Files.createTempFile(dir, "engine-", ".buf");
            try (FileChannel file = FileChannel.open(bufferFile, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                long size = Math.max(1, stride * spec.buffers());
                file.write(ByteBuffer.wrap(new byte[1]), size - 1);
                mapped = file.map(FileChannel.MapMode.READ_WRITE, 0, size);
                mapped.order(ByteOrder.nativeOrder());
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        lastStepOf = new long[spec.buffers()];
        consumedStepOf = new long[spec.buffers()];
        Arrays.fill(lastStepOf, -1);
        Arrays.fill(consumedStepOf, -1);
        byte[] path = bufferFile.toString().getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = body(64 + spec.buffers() * (3 * 2 + path.length * 2 + 32) + name.length() * 3);
        b.put((byte) 1).putShort((short) version).put((byte) backend).putInt(0).putShort((short) spec.layers()).putShort((short) spec.topK())
                .putInt(spec.experts()).put((byte) spec.idBytes()).put((byte) spec.slotBytes()).putInt(spec.maxTokens())
                .putShort((short) spec.buffers());
        putString(b, name);
        for (int i = 0; i < spec.buffers(); i++) {
            putBlob(b, path);
            b.putLong(i * stride).putLong(spec.routingBytes() - shortBy);
            putBlob(b, path);
            b.putLong(i * stride + spec.routingBytes()).putLong(spec.slotsBytes());
            putBlob(b, new byte[0]);
        }
        send(b);
    }

    /** Sends HELLO for {@code spec} and returns the answer: a WELCOME, or FAILED. */
    public SidecarMessage hello(Spec spec, Path dir, String name) {
        sendHello(spec, dir, name);
        return next();
    }

    /** Sends HELLO and asserts WELCOME with N empty handles. */
    public SidecarMessage.Welcome welcome(Spec spec, Path dir, String name) {
        SidecarMessage m = hello(spec, dir, name);
        if (!(m instanceof SidecarMessage.Welcome w)) {
            throw new AssertionError("expected WELCOME, got " + m);
        }
        if (w.consumedEventHandles().size() != spec.buffers() || w.consumedEventHandles().stream().anyMatch(h -> h.length != 0)) {
            throw new AssertionError("WELCOME should carry " + spec.buffers() + " empty handles: " + w);
        }
        return w;
    }

    // ---------------------------------------------------------------- steps

    /** Writes one step's data into a buffer (ids {@code [tokens, layers, topK]}, slots {@code [tokens]}). */
    @FunctionalInterface
    public interface StepWriter {
        void write(ByteBuffer routing, ByteBuffer slots);
    }

    /**
     * Runs one step: picks buffer {@code k mod N}, waits for CONSUMED of its previous step, lets {@code writer}
     * fill it, sends STEP. Returns the step id.
     */
    public long step(int tokens, StepWriter writer) {
        long k = nextStep++;
        int b = (int) (k % spec.buffers());
        awaitConsumed(b);
        ByteBuffer routing = region(b * stride, spec.routingBytes());
        ByteBuffer slots = region(b * stride + spec.routingBytes(), spec.slotsBytes());
        writer.write(routing, slots);
        lastStepOf[b] = k;
        if (slotsInSteps) {
            byte[] sent = new byte[tokens * spec.slotBytes()];
            slots.get(0, sent);
            for (int i = 0; i < sent.length; i++) {
                slots.put(i, (byte) 0x7F);
            }
            sendStepSlots(k, b, tokens, sent);
        } else {
            ByteBuffer m = body(15);
            m.put((byte) 2).putLong(k).putShort((short) b).putInt(tokens);
            send(m);
        }
        sentSteps++;
        sentTokens += tokens;
        return k;
    }

    /** Sends a STEP frame as given, without touching buffers or waiting (for protocol-error tests). */
    public void sendStep(long stepId, int buffer, long tokens) {
        ByteBuffer m = body(15);
        m.put((byte) 2).putLong(stepId).putShort((short) buffer).putInt((int) tokens);
        send(m);
    }

    /** Sends a STEP_SLOTS frame as given (type 9: STEP's fields, then {@code slots}), without touching buffers or waiting. */
    public void sendStepSlots(long stepId, int buffer, long tokens, byte[] slots) {
        ByteBuffer m = body(15 + slots.length);
        m.put((byte) 9).putLong(stepId).putShort((short) buffer).putInt((int) tokens).put(slots);
        send(m);
    }

    /** Sends {@code event} as the protocol message for it; a capture step's buffers are copied into the next engine buffer. */
    public void send(EngineEvent event) {
        if (event instanceof CaptureStep s) {
            ByteBuffer ids = ((HostDeviceBuffer) s.routing().buffer()).memory();
            ByteBuffer slotMapping = ((HostDeviceBuffer) s.slotMapping().buffer()).memory();
            int idBytes = s.tokenCount() * spec.layers() * spec.topK() * spec.idBytes();
            int slotBytes = s.tokenCount() * spec.slotBytes();
            step(s.tokenCount(), (routing, slots) -> {
                routing.put(0, ids, 0, idBytes);
                slots.put(0, slotMapping, 0, slotBytes);
            });
        } else if (event instanceof RequestAdmitted a) {
            admitted(a.requestId(), a.cachedTokens());
        } else if (event instanceof RequestFinished f) {
            finished(f.requestId(), f.slots());
        } else if (event instanceof RequestAborted a) {
            aborted(a.requestId());
        } else if (event instanceof SlotsMoved m) {
            slotsMoved(m.sourceSlots(), m.destinationSlots());
        } else if (event instanceof RoundCleared r) {
            roundCleared(r.round());
        }
    }

    private void awaitConsumed(int b) {
        long j = lastStepOf[b];
        if (j < 0) {
            return;
        }
        long start = System.nanoTime();
        long deadline = start + WAIT.toNanos();
        synchronized (consumedLock) {
            while (consumedStepOf[b] != j) {
                if (closedBySidecar || failed != null) {
                    throw new IllegalStateException("sidecar gone while waiting for CONSUMED(" + j + ", " + b + "): " + failed);
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new AssertionError("no CONSUMED(" + j + ", " + b + ") within " + WAIT);
                }
                try {
                    consumedLock.wait(Math.max(1, left / 1_000_000));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                }
            }
        }
        long waited = System.nanoTime() - start;
        consumedWaitNanos += waited;
        maxConsumedWaitNanos = Math.max(maxConsumedWaitNanos, waited);
    }

    /** Waits for the CONSUMED of every step sent so far. */
    public void awaitAllConsumed() {
        for (int b = 0; b < spec.buffers(); b++) {
            awaitConsumed(b);
        }
    }

    private ByteBuffer region(long offset, long bytes) {
        return mapped.slice((int) offset, (int) bytes).order(ByteOrder.nativeOrder());
    }

    /** After this, the reader thread overwrites buffer b with garbage the moment CONSUMED(k, b) arrives. */
    public void overwriteAfterConsumed() {
        overwrite = true;
    }

    // ---------------------------------------------------------------- lifecycle

    /** Sends ADMITTED. */
    public void admitted(String id) {
        admitted(id, 0);
    }

    /** Sends ADMITTED, or ADMITTED_CACHED (version 3) when {@code cachedTokens} is not 0. */
    public void admitted(String id, int cachedTokens) {
        ByteBuffer b = body(12 + id.length() * 3);
        putString(b.put((byte) (cachedTokens == 0 ? 3 : 10)), id);
        if (cachedTokens != 0) {
            b.putInt(cachedTokens);
        }
        send(b);
    }

    /** The REQUEST_ERRORs received so far, in order. */
    public List<SidecarMessage.RequestError> requestErrors() {
        synchronized (requestErrors) {
            return List.copyOf(requestErrors);
        }
    }

    /** Sends FINISHED with the slots in token order. */
    public void finished(String id, int[] slots) {
        ByteBuffer b = body(16 + id.length() * 3 + slots.length * 4);
        putString(b.put((byte) 4), id);
        b.putInt(slots.length);
        for (int s : slots) {
            b.putInt(s);
        }
        send(b);
        sentFinished++;
    }

    /** Sends FINISHED for a request given by its block table, as the Python module's {@code finished(block_table=...)} does. */
    public void finished(String id, int[] blockTable, int blockSize, int seqLen) {
        int[] slots = new int[seqLen];
        for (int p = 0; p < seqLen; p++) {
            slots[p] = blockTable[p / blockSize] * blockSize + p % blockSize;
        }
        finished(id, slots);
    }

    /** Sends ABORTED. */
    public void aborted(String id) {
        ByteBuffer b = body(8 + id.length() * 3);
        putString(b.put((byte) 5), id);
        send(b);
    }

    /** Sends SLOTS_MOVED. */
    public void slotsMoved(int[] sources, int[] destinations) {
        ByteBuffer b = body(16 + sources.length * 8);
        b.put((byte) 6).putInt(sources.length);
        for (int s : sources) {
            b.putInt(s);
        }
        for (int d : destinations) {
            b.putInt(d);
        }
        send(b);
    }

    /** Sends ROUND_CLEARED. */
    public void roundCleared(long round) {
        ByteBuffer b = body(16);
        b.put((byte) 7).putLong(round);
        send(b);
    }

    /** Sends GOODBYE and returns the answer (FAREWELL, or FAILED). */
    public SidecarMessage goodbye() {
        ByteBuffer b = body(1);
        b.put((byte) 8);
        send(b);
        return nextTerminal();
    }

    /** Sends a frame whose body is {@code body} as given. */
    public void sendBody(byte[] body) {
        ByteBuffer b = body(body.length);
        b.put(body);
        send(b);
    }

    /** Sends raw bytes (a frame header that lies, half a frame...). */
    public void sendRaw(byte[] bytes) {
        write(ByteBuffer.wrap(bytes));
    }

    // ---------------------------------------------------------------- answers

    /** The next message from the sidecar other than CONSUMED (waits up to 60 s). */
    public SidecarMessage next() {
        try {
            SidecarMessage m = inbox.poll(WAIT.toSeconds(), TimeUnit.SECONDS);
            if (m == null) {
                throw new AssertionError("no message from the sidecar within " + WAIT + (closedBySidecar ? " (connection closed)" : ""));
            }
            return m;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /** The next FAILED or FAREWELL (skipping nothing else: those are the only messages after WELCOME besides CONSUMED). */
    public SidecarMessage nextTerminal() {
        return next();
    }

    /** Waits for a FAILED and returns it. */
    public SidecarMessage.Failed expectFailed() {
        SidecarMessage m = next();
        if (!(m instanceof SidecarMessage.Failed f)) {
            throw new AssertionError("expected FAILED, got " + m);
        }
        return f;
    }

    /** Waits until the sidecar closed the connection (up to 60 s); true when it did. */
    public boolean awaitClosedBySidecar() {
        try {
            reader.join(WAIT.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return closedBySidecar;
    }

    /** Steps sent. */
    public long sentSteps() {
        return sentSteps;
    }

    /** Tokens of the steps sent. */
    public long sentTokens() {
        return sentTokens;
    }

    /** FINISHED messages sent. */
    public long sentFinished() {
        return sentFinished;
    }

    /** Bytes written to the socket so far (any thread). */
    public long bytesSent() {
        return bytesSent.get();
    }

    /** Total time spent waiting for CONSUMED before reusing a buffer. */
    public long consumedWaitNanos() {
        return consumedWaitNanos;
    }

    /** Longest single wait for CONSUMED. */
    public long maxConsumedWaitNanos() {
        return maxConsumedWaitNanos;
    }

    /** Closes the connection (without GOODBYE, unless it was sent) and deletes the buffer file. */
    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException e) {
            // closing anyway
        }
        try {
            reader.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (bufferFile != null) {
            try {
                Files.deleteIfExists(bufferFile);
            } catch (IOException e) {
                // a temp file
            }
        }
    }

    // ---------------------------------------------------------------- wire

    private static ByteBuffer body(int capacity) {
        ByteBuffer b = ByteBuffer.allocate(4 + capacity).order(ByteOrder.LITTLE_ENDIAN);
        b.position(4);
        return b;
    }

    private void send(ByteBuffer frame) {
        frame.putInt(0, frame.position() - 4);
        frame.flip();
        write(frame);
    }

    private void write(ByteBuffer bytes) {
        try {
            while (bytes.hasRemaining()) {
                bytesSent.addAndGet(channel.write(bytes));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("writing to the sidecar failed" + (failed != null ? " after " + failed : ""), e);
        }
    }

    private static void putString(ByteBuffer b, String s) {
        putBlob(b, s.getBytes(StandardCharsets.UTF_8));
    }

    private static void putBlob(ByteBuffer b, byte[] bytes) {
        b.putShort((short) bytes.length).put(bytes);
    }

    private void read() {
        ByteBuffer header = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
        Random garbage = new Random(7);
        try {
            while (true) {
                header.clear();
                if (!readFully(header)) {
                    break;
                }
                int length = header.getInt(0);
                ByteBuffer body = ByteBuffer.allocate(length).order(ByteOrder.LITTLE_ENDIAN);
                if (!readFully(body)) {
                    break;
                }
                body.flip();
                SidecarMessage m = decode(body);
                if (m instanceof SidecarMessage.Consumed c) {
                    if (overwrite) {
                        ByteBuffer r = region(c.buffer() * stride, spec.routingBytes());
                        ByteBuffer s = region(c.buffer() * stride + spec.routingBytes(), spec.slotsBytes());
                        for (int i = 0; i < r.capacity(); i += 4) {
                            r.putInt(i, garbage.nextInt(spec.experts()));
                        }
                        for (int i = 0; i + spec.slotBytes() <= s.capacity(); i += spec.slotBytes()) {
                            s.put(i, (byte) garbage.nextInt(4));
                        }
                    }
                    synchronized (consumedLock) {
                        consumedStepOf[c.buffer()] = c.stepId();
                        consumedLock.notifyAll();
                    }
                    continue;
                }
                if (m instanceof SidecarMessage.RequestError e) {
                    synchronized (requestErrors) {
                        requestErrors.add(e);
                    }
                    continue;
                }
                if (m instanceof SidecarMessage.Failed f) {
                    failed = f;
                } else if (m instanceof SidecarMessage.Farewell f) {
                    farewell = f;
                }
                inbox.add(m);
            }
        } catch (IOException e) {
            // closed
        } finally {
            closedBySidecar = true;
            synchronized (consumedLock) {
                consumedLock.notifyAll();
            }
        }
    }

    private boolean readFully(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (channel.read(b) < 0) {
                return false;
            }
        }
        return true;
    }

    private static SidecarMessage decode(ByteBuffer b) {
        int type = b.get() & 0xFF;
        switch (type) {
            case 101: {
                int version = b.getShort() & 0xFFFF;
                int backend = b.get() & 0xFF;
                int n = b.getShort() & 0xFFFF;
                List<byte[]> handles = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    handles.add(blob(b));
                }
                return new SidecarMessage.Welcome(version, backend, handles, new String(blob(b), StandardCharsets.UTF_8));
            }
            case 102:
                return new SidecarMessage.Consumed(b.getLong(), b.getShort() & 0xFFFF);
            case 103:
                return new SidecarMessage.Failed(b.getShort() & 0xFFFF, new String(blob(b), StandardCharsets.UTF_8));
            case 104:
                return new SidecarMessage.Farewell(b.getLong(), b.getLong(), b.getLong());
            case 105: {
                int code = b.getShort() & 0xFFFF;
                String id = new String(blob(b), StandardCharsets.UTF_8);
                return new SidecarMessage.RequestError(code, id, new String(blob(b), StandardCharsets.UTF_8));
            }
            default:
                throw new AssertionError("unknown sidecar message type " + type);
        }
    }

    private static byte[] blob(ByteBuffer b) {
        byte[] out = new byte[b.getShort() & 0xFFFF];
        b.get(out);
        return out;
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
