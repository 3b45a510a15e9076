package dev.routingreplay.examples.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import dev.routingreplay.cluster.Announcer;
import dev.routingreplay.cluster.ClusterReader;
import dev.routingreplay.cluster.ClusterRecord;
import dev.routingreplay.cluster.KafkaBroker;
import dev.routingreplay.cluster.Slice;
import dev.routingreplay.sink.RoutingReplay;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;

/**
 * The load run of docs/cluster.md (not part of the build: {@code -Dr3.probe=true}): three DeepSeek-V3-shaped rollout
 * nodes at full speed (host backend), two trainer readers in one group reading live (durable-to-trainer latency,
 * HdrHistogram), then catch-up reads of the whole backlog (fetch MB/s, whole records and an 8-layer slice), and an
 * announcer announcing a finished store from scratch (announcements/s). Prints the figures.
 */
@EnabledIfSystemProperty(named = "r3.probe", matches = "true")
class ClusterLoadProbeTest {
    private static final String TOPIC = "load";
    private static final int REQUESTS = Integer.getInteger("r3.probe.requests", 150);
    /** Pause of each node's engine after a finish, ms: a steady rollout rather than a burst. */
    private static final String PACE_MS = System.getProperty("r3.probe.pace-ms", "20");

    @TempDir
    Path dir;

    @Test
    @Timeout(value = 900, unit = TimeUnit.SECONDS)
    void loadRun() throws Exception {
        List<NodeProcess> nodes = new ArrayList<>();
        try (KafkaBroker broker = KafkaBroker.start(dir.resolve("broker"))) {
            broker.createTopic(TOPIC, 6);
            Histogram live = new Histogram(TimeUnit.MINUTES.toMicros(10), 3);
            AtomicLong liveBytes = new AtomicLong();
            AtomicLong liveCount = new AtomicLong();
            AtomicLong firstNanos = new AtomicLong();
            AtomicLong lastNanos = new AtomicLong();
            List<Disposable> readers = new ArrayList<>();
            for (int r = 0; r < 2; r++) {
                readers.add(ClusterReader.builder(broker.bootstrap(), "live", TOPIC).maxInFlight(16).build().read().subscribe(c -> {
                    synchronized (live) {
                        live.recordValue(Math.max(0, ChronoUnit.MICROS.between(Instant.EPOCH, Instant.now()) - c.announcement().timeMicros()));
                    }
                    firstNanos.compareAndSet(0, System.nanoTime());
                    lastNanos.set(System.nanoTime());
                    liveBytes.addAndGet(c.routing().rows().remaining());
                    liveCount.incrementAndGet();
                }));
            }
            Thread.sleep(5000); // both readers joined the group and own their partitions before the nodes start
            Path[] stores = new Path[3];
            for (int n = 0; n < 3; n++) {
                stores[n] = dir.resolve("node" + n);
                nodes.add(NodeProcess.start(dir.resolve("node" + n + ".out"), stores[n].toString(), Integer.toString(KafkaBroker.freePort()),
                        broker.bootstrap(), TOPIC, "deepseek-v3", Integer.toString(REQUESTS), Long.toString(7 + n), Long.toString(n * 1_000_000L),
                        PACE_MS));
            }
            long total = 0;
            for (NodeProcess node : nodes) {
                String line = node.await("ANNOUNCED", 600);
                assertNotNull(line, node.output());
                total += Long.parseLong(line.substring("ANNOUNCED ".length()));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (liveCount.get() < total && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            readers.forEach(Disposable::dispose);
            assertEquals(total, liveCount.get());
            double liveSeconds = (lastNanos.get() - firstNanos.get()) / 1e9;
            System.out.printf("PROBE live (pace " + PACE_MS + " ms): %d requests, %.1f MB in %.1f s while 3 nodes wrote (%.0f requests/s, %.1f MB/s); durable-to-trainer "
                    + "latency p50 %.1f ms, p99 %.1f ms, max %.1f ms%n", total, liveBytes.get() / 1e6, liveSeconds, total / liveSeconds,
                    liveBytes.get() / 1e6 / liveSeconds, live.getValueAtPercentile(50) / 1e3, live.getValueAtPercentile(99) / 1e3,
                    live.getMaxValue() / 1e3);
            catchUp(broker, "catchup-all", Slice.ALL, total);
            catchUp(broker, "catchup-8-layers", Slice.parse(0, "0:8"), total);

            long records;
            try (RoutingReplay replay = RoutingReplay.open(stores[0])) {
                records = replay.records(-1, false).count().block(Duration.ofSeconds(60));
            }
            broker.createTopic("announce-rate", 6);
            try (Announcer a = Announcer.start(Announcer.Config.of(stores[0], "http://127.0.0.1:1", broker.bootstrap(), "announce-rate"))) {
                while (a.announced() == 0) {
                    Thread.sleep(1); // the producer's first metadata round trip is not counted
                }
                long t0 = System.nanoTime();
                long first = a.announced();
                while (a.announced() < records && System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(120)) {
                    Thread.sleep(1);
                }
                double s = (System.nanoTime() - t0) / 1e9;
                System.out.printf("PROBE announce backlog: %d records of node 0 (DeepSeek-V3 shape, each read whole and checked) announced in "
                        + "%.3f s after the first: %.0f announcements/s%n", a.announced() - first, s, (a.announced() - first) / s);
            }
        } finally {
            for (NodeProcess node : nodes) {
                node.close();
            }
        }
    }

    private static void catchUp(KafkaBroker broker, String group, Slice slice, long total) {
        AtomicLong bytes = new AtomicLong();
        long t0 = System.nanoTime();
        List<ClusterRecord> got = ClusterReader.builder(broker.bootstrap(), group, TOPIC).maxInFlight(16).slice(slice).build().read()
                .doOnNext(c -> bytes.addAndGet(c.routing().rows().remaining())).map(c -> c).take(total).collectList()
                .block(Duration.ofSeconds(600));
        double s = (System.nanoTime() - t0) / 1e9;
        System.out.printf("PROBE catch-up %s (one reader, 16 in flight): %d requests, %.1f MB in %.2f s: %.0f requests/s, %.1f MB/s%n", group,
                got.size(), bytes.get() / 1e6, s, got.size() / s, bytes.get() / 1e6 / s);
    }

}
