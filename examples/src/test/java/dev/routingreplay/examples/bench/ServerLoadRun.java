package dev.routingreplay.examples.bench;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.examples.EngineConfig;
import dev.routingreplay.examples.SimulatedEngine;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.StoreConfig;
import io.netty.buffer.ByteBuf;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.ConcurrentHistogram;
import org.HdrHistogram.Histogram;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.http.client.HttpClient;
import reactor.netty.resources.ConnectionProvider;

/**
 * The replay server's load run (issue 11, item 8), in two steps that bench/server-load.sh runs in separate processes:
 *
 * <pre>
 *   ServerLoadRun store DIR REQUESTS             writes REQUESTS DeepSeek-V3 requests of 32,768 positions each
 *   ServerLoadRun load URL CLIENTS SECONDS QUERY fetches /requests/&lt;i&gt;.npy?QUERY with CLIENTS requests in flight
 * </pre>
 *
 * <p>{@code load} cycles through the store's ordinals for SECONDS (bounded in time; every fetch must answer 200 with a
 * body of the length the first answer of that query had, else it exits 1), then prints one line: fetches, requests/s,
 * MB/s and the latency of a whole fetch (request sent to last body byte) at p50/p99/max, in ms. docs/trainer.md has
 * the figures.
 */
public final class ServerLoadRun {
    /** Positions of one request: the 32k-token request (31,744 prompt tokens and 1,024 generated). */
    static final int PROMPT = 31_744;
    static final int OUTPUT = 1_024;

    private ServerLoadRun() {
    }

    /** Entry point; see the class comment for the arguments. */
    public static void main(String[] args) throws Exception {
        if (args.length == 3 && args[0].equals("store")) {
            store(Path.of(args[1]), Integer.parseInt(args[2]));
        } else if (args.length == 5 && args[0].equals("load")) {
            System.exit(load(args[1], Integer.parseInt(args[2]), Integer.parseInt(args[3]), args[4]));
        } else {
            System.err.println("usage: ServerLoadRun store DIR REQUESTS | load URL CLIENTS SECONDS QUERY");
            System.exit(2);
        }
    }

    /** Rolls out {@code requests} long DeepSeek-V3 requests on the host backend into a new store at {@code dir}. */
    static void store(Path dir, int requests) throws IOException {
        RoutingShape shape = ModelPreset.DEEPSEEK_V3.shape();
        int concurrency = 2;
        int blockSize = 16;
        int gpuBlocks = concurrency * ((PROMPT + OUTPUT) / blockSize + 4);
        EngineConfig config = new EngineConfig(shape, requests, concurrency, 1, PROMPT, PROMPT, OUTPUT, OUTPUT, blockSize, gpuBlocks,
                0, 8192, 8192, 0, false, 0, 0, 0, 1, 7);
        long start = System.nanoTime();
        try (HostDevice device = new HostDevice();
                SimulatedEngine engine = new SimulatedEngine(config, device);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, shape, engine.slotCapacity()))) {
            CapturePipeline pipeline = CapturePipeline.builder().name("load-store").device(device).sink(sink).ringDepth(4)
                    .maxTokensPerStep(engine.maxTokensPerStep()).build();
            engine.events().transform(pipeline).blockLast();
        }
        System.out.printf(Locale.ROOT, "store: %d requests of %d positions, %s %s, in %.1f s%n", requests, PROMPT + OUTPUT, "deepseek-v3",
                shape.describe(), (System.nanoTime() - start) / 1e9);
    }

    /** Runs the load; returns the exit status (0 when every fetch answered as expected). */
    static int load(String url, int clients, int seconds, String query) throws IOException {
        long[] ordinals = manifestOrdinals(url);
        long records = ordinals[1] - ordinals[0] + 1;
        ConnectionProvider pool = ConnectionProvider.builder("load").maxConnections(clients).pendingAcquireMaxCount(-1).build();
        HttpClient http = HttpClient.create(pool).baseUrl(url);
        Histogram latencyUs = new ConcurrentHistogram(3);
        AtomicLong bytes = new AtomicLong();
        AtomicLong expectedLength = new AtomicLong(-1);
        AtomicLong failures = new AtomicLong();
        AtomicLong next = new AtomicLong();
        long deadline = System.nanoTime() + Duration.ofSeconds(seconds).toNanos();
        long start = System.nanoTime();
        Flux.range(0, clients)
                .flatMap(client -> Flux.defer(() -> fetch(http, ordinals[0] + next.getAndIncrement() % records, query))
                        .doOnNext(answer -> {
                            latencyUs.recordValue(answer.micros);
                            bytes.addAndGet(answer.length);
                            if (answer.status != 200 || !expectedLength.compareAndSet(-1, answer.length) && expectedLength.get() != answer.length) {
                                if (failures.getAndIncrement() == 0) {
                                    System.err.println("load: a fetch answered " + answer.status + " with " + answer.length + " bytes");
                                }
                            }
                        })
                        .repeat(() -> System.nanoTime() < deadline), clients)
                .blockLast(Duration.ofSeconds(seconds + 120L));
        double elapsed = (System.nanoTime() - start) / 1e9;
        long n = latencyUs.getTotalCount();
        System.out.printf(Locale.ROOT,
                "load: %d clients, ?%s: %d fetches in %.1f s, %.1f requests/s, %.0f MB/s, %.2f MB each, latency p50 %.1f ms, "
                        + "p99 %.1f ms, max %.1f ms, failures %d%n",
                clients, query, n, elapsed, n / elapsed, bytes.get() / elapsed / 1e6, expectedLength.get() / 1e6,
                latencyUs.getValueAtPercentile(50) / 1e3, latencyUs.getValueAtPercentile(99) / 1e3, latencyUs.getMaxValue() / 1e3,
                failures.get());
        pool.dispose();
        return failures.get() == 0 && n > 0 ? 0 : 1;
    }

    /** One fetch's outcome. */
    private record Answer(int status, long length, long micros) {
    }

    /** Fetches one record and counts its body's bytes without keeping them. */
    private static Mono<Answer> fetch(HttpClient http, long ordinal, String query) {
        long t0 = System.nanoTime();
        return http.get().uri("/requests/" + ordinal + ".npy" + (query.isEmpty() ? "" : "?" + query))
                .response((response, body) -> body.map(ByteBuf::readableBytes).reduce(0L, (sum, b) -> sum + b)
                        .map(length -> new Answer(response.status().code(), length, (System.nanoTime() - t0) / 1000)))
                .single();
    }

    /** The first and last ordinal {@code /manifest} lists. */
    private static long[] manifestOrdinals(String url) throws IOException {
        String manifest = HttpClient.create().baseUrl(url).get().uri("/manifest").responseContent().aggregate().asString(StandardCharsets.UTF_8)
                .block(Duration.ofSeconds(30));
        if (manifest == null) {
            throw new IOException("no /manifest from " + url);
        }
        long first = field(manifest, "firstOrdinal");
        long last = field(manifest, "lastOrdinal");
        if (last < first) {
            throw new IOException("the store at " + url + " holds no request: " + manifest);
        }
        return new long[] {first, last};
    }

    private static long field(String json, String name) {
        int at = json.indexOf("\"" + name + "\":");
        if (at < 0) {
            throw new IllegalStateException("no " + name + " in " + json);
        }
        int from = at + name.length() + 3;
        int to = from;
        while (to < json.length() && (Character.isDigit(json.charAt(to)) || json.charAt(to) == '-')) {
            to++;
        }
        return Long.parseLong(json.substring(from, to));
    }
}
