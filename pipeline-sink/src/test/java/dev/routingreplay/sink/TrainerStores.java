package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import net.openhft.chronicle.queue.ExcerptAppender;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;
import reactor.core.publisher.Flux;

/**
 * Stores for the trainer-facing server tests: multi-token requests whose ids follow {@link Routing#id}, a repeated id
 * in a later round, an id that needs percent-encoding; records written byte by byte in an older format; and an HTTP
 * helper that reads {@code .npy} answers.
 */
final class TrainerStores {
    /** 4 layers, top 2 of 300 experts: uint16. */
    static final RoutingShape SHAPE = new RoutingShape(4, 2, 300);
    /** The ids written by {@link #write}, in write order (ordinals 0..4), and their lengths and request numbers. */
    static final List<String> IDS = List.of("a", "b/c d+é?", "c", "d", "a");
    static final int[] LENGTHS = {5, 3, 4, 1, 2};

    private TrainerStores() {
    }

    /** The request number {@link Routing#id} was called with for the record of ordinal {@code i}. */
    static int request(int ordinal) {
        return ordinal;
    }

    /** A closed store at {@code dir}: records 0..3 in round 0, then a clear, then "a" again (ordinal 4, round 1). */
    static StoreConfig write(Path dir) {
        StoreConfig config = StoreConfig.of(dir, SHAPE, 64).withMinFreeBytes(0);
        HostDevice device = new HostDevice();
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config); HostEngine engine = new HostEngine(device, SHAPE, 8)) {
            List<Supplier<EngineEvent>> script = new ArrayList<>();
            for (int r = 0; r < IDS.size(); r++) {
                int req = r;
                String id = IDS.get(r);
                int n = LENGTHS[r];
                long[] slots = new long[n];
                int[] order = new int[n];
                for (int t = 0; t < n; t++) {
                    slots[t] = req * 8L + t;
                    order[t] = req * 8 + t;
                }
                if (r == 4) {
                    script.add(() -> new RoundCleared(1));
                }
                script.add(() -> new RequestAdmitted(id));
                script.add(() -> engine.step(req, slots, (t, l, k) -> Routing.id(req, t, l, k, 300)));
                script.add(() -> new RequestFinished(id, order));
            }
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(8).build();
            Flux.fromIterable(script).map(Supplier::get).transform(pipeline).blockLast(Duration.ofSeconds(30));
        }
        return config;
    }

    /** The stored id of the record of ordinal {@code ordinal} at (position, layer, k). */
    static int id(int ordinal, int position, int layer, int k) {
        return Routing.id(request(ordinal), position, layer, k, 300);
    }

    /**
     * Appends a request record written byte by byte, as a build of record version {@code version} (2 or 3) would
     * have: {@code ids} row-major {@code [seqLen, layers, topK]} in the legacy dtype (room for the sentinel).
     */
    static void appendRaw(StoreConfig config, int version, String id, long round, long ordinal, int[] ids) {
        RoutingShape shape = config.shape();
        RoutingDtype dtype = RoutingDtype.legacyForExperts(shape.numExperts());
        int seqLen = ids.length / shape.idsPerRow();
        ByteBuffer rows = ByteBuffer.allocate(seqLen * shape.idsPerRow() * dtype.bytes()).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < ids.length; i++) {
            dtype.write(rows, i * dtype.bytes(), ids[i]);
        }
        byte[] rowBytes = rows.array();
        ByteBuffer head = ByteBuffer.allocate(256).order(ByteOrder.LITTLE_ENDIAN);
        // the layout of versions 2 and 3 (RecordFormat): 3 adds the ordinal and the rows' checksum
        head.putInt(RecordFormat.REQUEST_MAGIC).put((byte) version);
        byte[] utf8 = id.getBytes(StandardCharsets.UTF_8);
        head.putInt(utf8.length).put(utf8).putLong(round);
        if (version == 3) {
            head.putLong(ordinal);
        }
        head.putInt(seqLen).putInt(shape.moeLayers()).putInt(shape.topK()).putInt(shape.numExperts()).put((byte) dtype.bytes());
        if (version == 3) {
            head.putInt(Crc32c.of(rowBytes, 0, rowBytes.length));
        }
        byte[] all = new byte[head.position() + rowBytes.length];
        System.arraycopy(head.array(), 0, all, 0, head.position());
        System.arraycopy(rowBytes, 0, all, head.position(), rowBytes.length);
        try (SingleChronicleQueue q = StoreQueues.writable(config.requestsDir(), new ConcurrentHashMap<>(), "request",
                config.requestBlockSize(), config.rollCycle()); ExcerptAppender appender = q.createAppender();
                DocumentContext dc = appender.writingDocument()) {
            dc.wire().bytes().write(all);
            dc.wire().bytes().writeInt(Crc32c.of(all, 0, all.length));
        }
    }

    /** An empty store at {@code dir} (manifest and queues, no record). */
    static StoreConfig empty(Path dir, RoutingShape shape) {
        StoreConfig config = StoreConfig.of(dir, shape, 64).withMinFreeBytes(0);
        ChronicleRoutingSink.open(config).close();
        return config;
    }

    /** A {@code .npy} answer taken apart. */
    record Npy(int status, String descr, int[] shape, byte[] data, byte[] body, HttpResponse<byte[]> response) {
        String text() {
            return new String(body, StandardCharsets.UTF_8);
        }

        String header(String name) {
            return response.headers().firstValue(name).orElse(null);
        }

        /** The element at flat position {@code i} as a long (signed per descr). */
        long at(int i) {
            ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
            switch (descr) {
                case "|u1":
                    return b.get(i) & 0xFF;
                case "<u2":
                    return b.getShort(i * 2) & 0xFFFF;
                case "<i2":
                    return b.getShort(i * 2);
                case "<i4":
                    return b.getInt(i * 4);
                case "<i8":
                    return b.getLong(i * 8);
                default:
                    throw new AssertionError(descr);
            }
        }
    }

    private static final Pattern DICT = Pattern.compile("'descr': '([^']+)'.*'shape': \\((\\d+), (\\d+), (\\d+)\\)");
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();

    /** GETs {@code uri} of {@code server} (with {@code token} when not null) and takes a 200 {@code .npy} body apart. */
    static Npy get(ReplayServer server, String uri, String token) throws IOException, InterruptedException {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + uri)).timeout(Duration.ofSeconds(20));
        if (token != null) {
            b.header("Authorization", "Bearer " + token);
        }
        HttpResponse<byte[]> res = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofByteArray());
        byte[] body = res.body();
        if (res.statusCode() != 200 || !res.headers().firstValue("content-type").orElse("").equals("application/octet-stream")) {
            return new Npy(res.statusCode(), null, null, null, body, res);
        }
        int headerLength = (body[8] & 0xFF) | (body[9] & 0xFF) << 8;
        String dict = new String(body, 10, headerLength, StandardCharsets.US_ASCII);
        Matcher m = DICT.matcher(dict);
        if (!m.find()) {
            throw new AssertionError("not a .npy header: " + dict);
        }
        int[] shape = {Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3)), Integer.parseInt(m.group(4))};
        return new Npy(200, m.group(1), shape, Arrays.copyOfRange(body, 10 + headerLength, body.length), body, res);
    }

    /** GETs {@code uri} as text: status and body. */
    static HttpResponse<String> text(ReplayServer server, String uri, String token) throws IOException, InterruptedException {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + uri)).timeout(Duration.ofSeconds(20));
        if (token != null) {
            b.header("Authorization", token.contains(" ") ? token : "Bearer " + token);
        }
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }
}
