package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.List;
import reactor.core.publisher.Flux;

/**
 * A writer process for the disk-full test, run on a small tmpfs: writes requests of {@link #TOKENS} tokens (every id
 * in [1, 255], so a zeroed row is never valid) and, once {@link #FILL_AFTER} are acknowledged, starts a thread that
 * fills the file system with another file while the writer goes on. Prints {@code ACK id} per acknowledged finish,
 * {@code FAILED message} when the pipeline fails, then reads the store back and prints {@code VERIFIED n} (or
 * {@code BAD ...}). Argument: the store folder.
 */
public final class DiskFillWriter {
    static final RoutingShape SHAPE = new RoutingShape(58, 8, 256);
    static final int TOKENS = 1024;
    static final int FILL_AFTER = 3;

    private DiskFillWriter() {
    }

    static int id(long request, int token, int layer, int k) {
        return (int) ((request + token + layer + k) % 255) + 1;
    }

    /** Runs the writer. */
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        StoreConfig config = StoreConfig.of(dir, SHAPE, TOKENS).withLimits(TOKENS, TOKENS).withMinFreeBytes(0);
        HostDevice device = new HostDevice();
        Thread filler = new Thread(() -> fill(dir.resolveSibling("filler")), "filler");
        long[] slots = new long[TOKENS];
        int[] finishSlots = new int[TOKENS];
        for (int t = 0; t < TOKENS; t++) {
            slots[t] = t;
            finishSlots[t] = t;
        }
        try (HostEngine engine = new HostEngine(device, SHAPE, TOKENS); ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(TOKENS).build();
            Flux.range(0, 10_000).concatMap(r -> Flux.range(0, 3).map(i -> i == 0 ? new RequestAdmitted("r" + r)
                            : i == 1 ? engine.step(r, slots, (t, l, k) -> id(r, t, l, k))
                            : (EngineEvent) new RequestFinished("r" + r, finishSlots)))
                    .transform(pipeline)
                    .doOnNext(e -> {
                        if (e instanceof RequestFinished f) {
                            System.out.println("ACK " + f.requestId());
                            System.out.flush();
                            if (f.requestId().equals("r" + (FILL_AFTER - 1))) {
                                filler.start();
                            }
                        }
                    })
                    .blockLast(Duration.ofSeconds(60));
            System.out.println("DONE (the disk never filled)");
        } catch (RuntimeException e) {
            System.out.println("FAILED " + e.getMessage());
        }
        filler.join();
        System.out.flush();
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            List<ReplayedRequest> all = replay.fromStart().collectList().block(Duration.ofSeconds(30));
            for (ReplayedRequest r : all) {
                RequestRouting routing = r.routing();
                long request = Long.parseLong(routing.requestId().substring(1));
                for (int t = 0; t < routing.seqLen(); t++) {
                    for (int l = 0; l < SHAPE.moeLayers(); l++) {
                        for (int k = 0; k < SHAPE.topK(); k++) {
                            if (routing.id(t, l, k) != id(request, t, l, k)) {
                                System.out.println("BAD " + routing.requestId() + " token " + t + " layer " + l + " k " + k + ": "
                                        + routing.id(t, l, k));
                                return;
                            }
                        }
                    }
                }
                System.out.println("STORED " + routing.requestId());
            }
            System.out.println("VERIFIED " + all.size());
        } catch (RuntimeException e) {
            System.out.println("READ FAILED " + e.getMessage());
        }
    }

    /** Writes {@code file} until the file system is full. */
    private static void fill(Path file) {
        ByteBuffer block = ByteBuffer.allocateDirect(1 << 20);
        try (FileChannel out = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            for (;;) {
                block.clear();
                out.write(block);
            }
        } catch (IOException e) {
            System.out.println("FILLED " + e.getMessage());
        }
    }
}
