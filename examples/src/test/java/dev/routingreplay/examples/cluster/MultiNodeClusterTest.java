package dev.routingreplay.examples.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.cluster.ClusterReader;
import dev.routingreplay.cluster.ClusterRecord;
import dev.routingreplay.cluster.KafkaBroker;
import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.examples.TrainerCheck;
import dev.routingreplay.sink.ReplayedRequest;
import dev.routingreplay.sink.RoutingReplay;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import reactor.blockhound.BlockHound;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;

/**
 * Issue 12's cluster test, on one machine: a real KRaft broker (child JVM), three rollout node JVMs (simulated engine,
 * Chronicle store, replay server on its own loopback port, announcer) and two trainer readers in one consumer group.
 * One node is killed with {@code kill -9} mid-run and restarted on its store; one reader stops mid-run and the group
 * rebalances. Every request finished in any node's store reaches exactly one reader's output, with the routing the
 * store holds and the simulated gate (the oracle) gives.
 */
class MultiNodeClusterTest {
    private static final ModelPreset MODEL = ModelPreset.GPT_OSS_120B;
    private static final String TOPIC = "r3-requests";

    @TempDir
    Path dir;

    /** The readers must never block a Reactor non-blocking thread (Netty's event loops, the parallel timers). */
    @BeforeAll
    static void installBlockHound() {
        BlockHound.install();
    }

    @Test
    @Timeout(value = 300, unit = TimeUnit.SECONDS)
    void nothingLostNothingTwiceAcrossANodeKillAndAReaderLeaving() throws Exception {
        List<NodeProcess> nodes = new ArrayList<>();
        Disposable readerA = null;
        Disposable readerB = null;
        try (KafkaBroker broker = KafkaBroker.start(dir.resolve("broker"))) {
            broker.createTopic(TOPIC, 6);
            int[] ports = {KafkaBroker.freePort(), KafkaBroker.freePort(), KafkaBroker.freePort()};
            Path[] stores = new Path[3];
            for (int n = 0; n < 3; n++) {
                stores[n] = dir.resolve("node" + n);
                nodes.add(startNode(broker, n, 0, stores[n], ports[n], n == 1 ? 200 : 60));
            }
            for (NodeProcess node : nodes) {
                assertNotNull(node.await("READY", 90), "node ready: " + node.output());
            }
            List<ClusterRecord> outA = new CopyOnWriteArrayList<>();
            List<ClusterRecord> outB = new CopyOnWriteArrayList<>();
            List<Throwable> errors = new CopyOnWriteArrayList<>();
            readerA = reader(broker).subscribe(outA::add, errors::add);
            readerB = reader(broker).subscribe(outB::add, errors::add);

            await(() -> outA.size() + outB.size() >= 30, 120, "30 requests read");
            assertTrue(!nodes.get(1).output().contains("FINISHED"), "node 1 is killed mid-run: " + nodes.get(1).output());
            nodes.get(1).kill();
            Thread.sleep(500);
            // restarted on its store and port; its engine goes on with new prompts
            nodes.set(1, startNode(broker, 1, 1, stores[1], ports[1], 30));
            assertNotNull(nodes.get(1).await("READY", 90), "node 1 back: " + nodes.get(1).output());

            await(() -> outA.size() + outB.size() >= 80, 120, "80 requests read");
            readerB.dispose();
            int fromB = outB.size();

            for (int n = 0; n < 3; n++) {
                assertNotNull(nodes.get(n).await("ANNOUNCED", 180), "node " + n + " announced all: " + nodes.get(n).output());
            }
            Map<String, RequestRouting> stored = new HashMap<>();
            for (Path store : stores) {
                try (RoutingReplay replay = RoutingReplay.open(store)) {
                    for (ReplayedRequest r : replay.fromStart().collectList().block(Duration.ofSeconds(60))) {
                        assertTrue(stored.put(r.routing().requestId(), r.routing()) == null, "ids are unique across nodes");
                    }
                }
            }
            await(() -> outA.size() + outB.size() >= stored.size() || !errors.isEmpty(), 120, stored.size() + " requests read");
            Thread.sleep(1500); // anything handed twice shows up now
            errors.forEach(Throwable::printStackTrace);
            assertTrue(errors.isEmpty(), "no reader failed: " + errors);
            assertEquals(fromB, outB.size(), "nothing reached the stopped reader");
            assertTrue(fromB > 0 && outA.size() > 0, "both readers took a share: " + outA.size() + " / " + fromB);

            List<ClusterRecord> all = new ArrayList<>(outA);
            all.addAll(outB);
            Set<String> seen = new HashSet<>();
            List<String> twice = new ArrayList<>();
            for (ClusterRecord r : all) {
                if (!seen.add(r.routing().requestId())) {
                    twice.add(r.routing().requestId());
                }
            }
            List<String> where = new ArrayList<>();
            for (ClusterRecord r : all) {
                if (twice.contains(r.routing().requestId())) {
                    where.add((outA.stream().anyMatch(x -> x == r) ? "A" : "B") + " p" + r.partition() + "@" + r.offset() + " " + r.announcement().describe()
                            + " t=" + r.announcement().timeMicros());
                }
            }
            assertEquals(List.of(), twice, "handed downstream twice: " + where);
            assertEquals(stored.keySet(), seen, "every finished request reached exactly one reader");
            for (ClusterRecord r : all) {
                assertEquals(stored.get(r.routing().requestId()).rows(), r.routing().rows(), r.announcement().describe());
            }
            TrainerCheck.Report report = TrainerCheck.verify(Flux.fromIterable(all).map(ClusterRecord::routing), MODEL.shape())
                    .block(Duration.ofSeconds(60));
            assertTrue(report.ok(), report.describe());
            assertEquals(stored.size(), report.requests());
            readerA.dispose(); // while the broker is up: its final commit goes through
        } finally {
            if (readerA != null) {
                readerA.dispose();
            }
            if (readerB != null) {
                readerB.dispose();
            }
            for (NodeProcess node : nodes) {
                node.close();
            }
        }
    }

    private static Flux<ClusterRecord> reader(KafkaBroker broker) {
        return ClusterReader.builder(broker.bootstrap(), "trainers", TOPIC).maxInFlight(8)
                .retry(30, Duration.ofMillis(100), Duration.ofSeconds(1)).build().read();
    }

    private NodeProcess startNode(KafkaBroker broker, int n, int life, Path store, int port, int requests) throws IOException {
        Files.createDirectories(dir);
        return NodeProcess.start(dir.resolve("node" + n + "-life" + life + ".out"), store.toString(), Integer.toString(port), broker.bootstrap(), TOPIC,
                "gpt-oss-120b", Integer.toString(requests), Long.toString(100 + n * 10 + life), Long.toString(n * 100_000L + life * 10_000L),
                "40");
    }

    private static void await(BooleanSupplier condition, long seconds, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!condition.getAsBoolean() && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        assertTrue(condition.getAsBoolean(), "timed out waiting for: " + what);
    }

}
