package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import reactor.core.publisher.Flux;

/** Writes small stores for the server and command-line tests: one single-token request per id. */
public final class TestStores {
    public static final RoutingShape SHAPE = new RoutingShape(3, 2, 300);

    private TestStores() {
    }

    /** Finishes one request per id (request r on slot r) into {@code sink}, waiting until all are acknowledged. */
    public static void finish(ChronicleRoutingSink sink, int firstRequest, String... ids) {
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, SHAPE, 4)) {
            List<Supplier<EngineEvent>> script = new ArrayList<>();
            for (int i = 0; i < ids.length; i++) {
                int req = firstRequest + i;
                String id = ids[i];
                script.add(() -> new RequestAdmitted(id));
                script.add(() -> engine.step(req, new long[] {req}, (t, l, k) -> Routing.id(req, t, l, k, 300)));
                script.add(() -> new RequestFinished(id, new int[] {req}));
            }
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(4).build();
            Flux.fromIterable(script).map(Supplier::get).transform(pipeline).blockLast(Duration.ofSeconds(30));
        }
    }

    /** A closed store at {@code config.dir()} holding one request per id. */
    public static void write(StoreConfig config, String... ids) {
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            finish(sink, 0, ids);
        }
    }
}
