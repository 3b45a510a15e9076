package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import reactor.core.publisher.Flux;

/**
 * A writer process for the cross-process and kill -9 tests. Request r is admitted, written by steps 2r and 2r+1 (four
 * tokens each) into slots {@code (r % 64) * 8 ..+8}, and finished. Prints {@code ACK STEP n} / {@code ACK FINISH r}
 * once the sink acknowledged each, so the parent knows what must survive a kill.
 *
 * <p>Arguments: store folder, first request, end request (exclusive; -1 runs until killed).
 */
public final class CrashWriter {
    static final RoutingShape SHAPE = new RoutingShape(6, 4, 300);
    static final int SLOTS = 64 * 8;

    private CrashWriter() {
    }

    static String requestId(long r) {
        return "crash-" + r;
    }

    static int slot(long r, int position) {
        return (int) ((r % 64) * 8 + position);
    }

    static int id(long r, int position, int layer, int k) {
        return Routing.id(r, position, layer, k, SHAPE.numExperts());
    }

    /** Runs the writer. */
    public static void main(String[] args) {
        Path dir = Path.of(args[0]);
        long first = Long.parseLong(args[1]);
        long end = Long.parseLong(args[2]);
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, SHAPE, 8);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, SLOTS))) {
            System.out.println("RECOVERED " + sink.recovery().describe());
            System.out.flush();
            CapturePipeline pipeline = CapturePipeline.builder().name("crash").device(device).sink(sink).ringDepth(4)
                    .maxTokensPerStep(8).build();
            long[] next = {first * 4};
            Flux.<EngineEvent>generate(s -> {
                long n = next[0]++;
                long r = n / 4;
                if (end >= 0 && r >= end) {
                    s.complete();
                    return;
                }
                switch ((int) (n % 4)) {
                    case 0:
                        s.next(new RequestAdmitted(requestId(r)));
                        break;
                    case 1:
                    case 2: {
                        int half = (int) (n % 4) - 1;
                        long[] slots = new long[4];
                        for (int t = 0; t < 4; t++) {
                            slots[t] = slot(r, half * 4 + t);
                        }
                        s.next(engine.step(2 * r + half, slots, (t, l, k) -> id(r, half * 4 + t, l, k)));
                        break;
                    }
                    default: {
                        int[] slots = new int[8];
                        for (int p = 0; p < 8; p++) {
                            slots[p] = slot(r, p);
                        }
                        s.next(new RequestFinished(requestId(r), slots));
                    }
                }
            }).transform(pipeline).doOnNext(e -> {
                if (e instanceof CaptureStep step) {
                    System.out.println("ACK STEP " + step.stepId());
                } else if (e instanceof RequestFinished f) {
                    System.out.println("ACK FINISH " + f.requestId().substring("crash-".length()));
                }
                System.out.flush();
            }).blockLast();
            System.out.println("DONE");
            System.out.flush();
        }
    }

    /** The command that runs this class in a new JVM with this JVM's flags and class path. */
    static List<String> command(Path dir, long first, long end) {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (arg.startsWith("--add-") || arg.startsWith("-Dchronicle") || arg.startsWith("-Xmx")) {
                cmd.add(arg);
            }
        }
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(CrashWriter.class.getName());
        cmd.add(dir.toString());
        cmd.add(Long.toString(first));
        cmd.add(Long.toString(end));
        return cmd;
    }
}
