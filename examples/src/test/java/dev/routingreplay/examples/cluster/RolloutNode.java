package dev.routingreplay.examples.cluster;

import dev.routingreplay.cluster.Announcer;
import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.examples.EngineConfig;
import dev.routingreplay.examples.SimulatedEngine;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.ReplayServer;
import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.StoredRecord;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * One rollout node of the multi-node test, in a JVM of its own: the simulated engine (host backend) through the capture
 * pipeline into a Chronicle store, the store's replay server on a loopback port, and the announcer. Started on a store
 * that exists (after a {@code kill -9}) it recovers it and goes on. Prints {@code READY <url>} once serving,
 * {@code FINISHED <n>} when the engine is done and {@code ANNOUNCED <n>} once every record of the store is known to be
 * announced; then serves until killed.
 *
 * <p>Arguments: store, port, bootstrap, topic, model, requests, seed, first prompt number, pause in ms after each finish.
 */
public final class RolloutNode {
    private RolloutNode() {
    }

    /** Runs the node; see the class. */
    public static void main(String[] args) throws Exception {
        Path store = Path.of(args[0]);
        int port = Integer.parseInt(args[1]);
        String bootstrap = args[2];
        String topic = args[3];
        ModelPreset model = ModelPreset.fromName(args[4]);
        int requests = Integer.parseInt(args[5]);
        long seed = Long.parseLong(args[6]);
        long firstPrompt = Long.parseLong(args[7]);
        long paceNanos = TimeUnit.MILLISECONDS.toNanos(Long.parseLong(args[8]));
        EngineConfig config = EngineConfig.defaults(model.shape(), requests, 16, seed);
        HostDevice device = new HostDevice();
        try (SimulatedEngine engine = new SimulatedEngine(config, device, firstPrompt);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(store, model.shape(), engine.slotCapacity())
                        .withMinFreeBytes(0));
                ReplayServer server = ReplayServer.start(store, "127.0.0.1", port);
                Announcer announcer = Announcer.start(Announcer.Config.of(store, "http://127.0.0.1:" + port, bootstrap, topic))) {
            System.out.println("READY http://127.0.0.1:" + server.port());
            System.out.flush();
            CapturePipeline pipeline = CapturePipeline.builder().name("node").device(device).sink(sink).ringDepth(4)
                    .maxTokensPerStep(engine.maxTokensPerStep()).build();
            engine.events().doOnNext(e -> {
                if (e instanceof RequestFinished && paceNanos > 0) {
                    LockSupport.parkNanos(paceNanos); // the engine's own thread: a slower rollout
                }
            }).transform(pipeline).blockLast();
            System.out.println("FINISHED " + engine.finishedIds().size());
            System.out.flush();
            long last;
            long records;
            try (RoutingReplay replay = RoutingReplay.open(store)) {
                List<StoredRecord> all = replay.records(-1, false).collectList().block(Duration.ofSeconds(60));
                records = all.size();
                last = all.isEmpty() ? -1 : all.get(all.size() - 1).index();
            }
            while (announcer.announcedUpTo() != last && announcer.failure() == null) {
                Thread.sleep(20);
            }
            System.out.println(announcer.failure() == null ? "ANNOUNCED " + records : "FAILED " + announcer.failure());
            System.out.flush();
            Thread.sleep(Long.MAX_VALUE);
        }
    }
}
