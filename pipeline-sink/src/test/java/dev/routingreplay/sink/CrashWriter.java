package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.testing.HostEngine;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import reactor.core.publisher.Flux;

/**
 * A writer process for the cross-process and kill -9 tests: runs {@link CrashWorkload}'s plan (steps, prefix hits,
 * moves, swaps, clears) from request {@code first}. Prints {@code ACK J n} once the sink acknowledged the plan's
 * n-th journaled op (counted from {@code first}) and {@code ACK FINISH r} for each finish, so the parent knows what
 * must survive a kill.
 *
 * <p>Arguments: store folder, first request, end request (exclusive; -1 runs until killed), and optionally: how many
 * milliseconds every write holds the queue's write lock before it commits (so readers meet a held lock), and the
 * number of a request record write that prints {@code HOLDING} and then waits forever inside it, holding the request
 * queue's write lock until the process is killed.
 */
public final class CrashWriter {
    static final RoutingShape SHAPE = CrashWorkload.SHAPE;
    static final int SLOTS = CrashWorkload.SLOTS;

    private CrashWriter() {
    }

    /** Runs the writer. */
    public static void main(String[] args) {
        Path dir = Path.of(args[0]);
        long first = Long.parseLong(args[1]);
        long end = Long.parseLong(args[2]);
        long holdMillis = args.length > 3 ? Long.parseLong(args[3]) : 0;
        long hangAt = args.length > 4 ? Long.parseLong(args[4]) : -1;
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, SHAPE, 8);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, SLOTS))) {
            System.out.println("RECOVERED " + sink.recovery().describe());
            System.out.flush();
            long[] requestWrites = {0};
            if (holdMillis > 0 || hangAt >= 0) {
                sink.probe = (queue, kind) -> {
                    if (kind == ChronicleRoutingSink.WriteProbe.REQUEST && requestWrites[0]++ == hangAt) {
                        System.out.println("HOLDING");
                        System.out.flush();
                        for (;;) {
                            LockSupport.park();
                        }
                    }
                    if (holdMillis > 0) {
                        LockSupport.parkNanos(holdMillis * 1_000_000);
                    }
                };
            }
            CapturePipeline pipeline = CapturePipeline.builder().name("crash").device(device).sink(sink).ringDepth(4)
                    .maxTokensPerStep(8).build();
            Deque<CrashWorkload.Op> pending = new ArrayDeque<>();
            long[] next = {first};
            Flux.<CrashWorkload.Op>generate(s -> {
                if (pending.isEmpty()) {
                    if (end >= 0 && next[0] >= end) {
                        s.complete();
                        return;
                    }
                    pending.addAll(CrashWorkload.ops(next[0]++));
                }
                s.next(pending.poll());
            }).map(op -> CrashWorkload.event(op, engine)).transform(pipeline).doOnNext(new Consumer<EngineEvent>() {
                private long journaled;

                @Override
                public void accept(EngineEvent e) {
                    if (!(e instanceof RequestAdmitted)) {
                        System.out.println("ACK J " + ++journaled);
                    }
                    if (e instanceof RequestFinished f) {
                        System.out.println("ACK FINISH " + CrashWorkload.request(f.requestId()));
                    }
                    System.out.flush();
                }
            }).blockLast();
            System.out.println("DONE");
            System.out.flush();
        }
    }

    /** The command that runs this class in a new JVM with this JVM's flags and class path. */
    static List<String> command(Path dir, long first, long end, long... holdAndHang) {
        List<String> cmd = javaCommand(CrashWriter.class);
        cmd.add(dir.toString());
        cmd.add(Long.toString(first));
        cmd.add(Long.toString(end));
        for (long a : holdAndHang) {
            cmd.add(Long.toString(a));
        }
        return cmd;
    }

    /** {@code java} with this JVM's flags and class path, running {@code main}'s main method (arguments to add). */
    static List<String> javaCommand(Class<?> main) {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (arg.startsWith("--add-") || arg.startsWith("-Dchronicle") || arg.startsWith("-Xmx")) {
                cmd.add(arg);
            }
        }
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(main.getName());
        return cmd;
    }
}
