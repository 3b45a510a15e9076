package dev.routingreplay.examples.cli;

import dev.routingreplay.bridge.SessionSummary;
import dev.routingreplay.bridge.SidecarServer;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.InterprocessDevice;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.sink.SlotStore;
import dev.routingreplay.cuda.PackSite;
import dev.routingreplay.examples.Backends;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.StoreException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import net.openhft.chronicle.queue.rollcycles.LegacyRollCycles;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine;

/**
 * {@code r3 sidecar}: the engine bridge's sidecar ({@link SidecarServer}, docs/engine-bridge.md). Listens on a Unix
 * domain socket for one engine at a time, opens the engine's buffers on the chosen backend and stores what it captures
 * in a Chronicle store, created (or reopened) at the first HELLO with that engine's shape. Prints
 * {@code r3 sidecar: listening on PATH} once engines may connect, a progress line every {@code --progress-ms} while an
 * engine runs and a summary line per session.
 *
 * <p>Stops on SIGTERM or Ctrl-C (the running engine is answered FAILED code 4 "shutting down" after the messages being
 * fed, everything fed is stored, the store is closed and the socket removed), or with {@code --once} after the first
 * engine session: exit status 0 when it ended with GOODBYE/FAREWELL, 1 otherwise (3 when the store could not be opened).
 * Options are checked before anything is opened; failures exit with an {@link ExitStatus} and one line.
 */
@Command(name = "sidecar", mixinStandardHelpOptions = true,
        description = "Serve the engine bridge: an engine in another process feeds the capture pipeline over a Unix domain socket.")
public final class SidecarCommand implements Callable<Integer> {
    /** Most staging ring slots (what {@code RingSpec} accepts). */
    static final int MAX_RING_DEPTH = 1024;

    @Spec
    CommandSpec spec;

    @Mixin
    VerboseOption verbose;

    @Option(names = "--socket", required = true, description = "The Unix domain socket to listen on (a stale socket there is replaced).")
    Path socket;

    @Option(names = "--store", required = true, description = "Store folder: created at the first engine's HELLO, or reopened if it holds a store of that shape.")
    Path store;

    @Option(names = "--backend", defaultValue = "host", description = "Device backend: host (default; mapped files) or cuda (CUDA IPC).")
    String backend;

    @Option(names = "--pack", defaultValue = "host", description = "Where the cuda backend packs each step: host (default: the copy "
            + "engine moves the engine's raw ids and the CPU packs them, so the sidecar runs no kernel beside the engine's) or device (the "
            + "pack kernel: a quarter to an eighth of the PCIe traffic, but a kernel of another process on the engine's GPU).")
    String pack;

    @Option(names = "--device", defaultValue = "0", description = "CUDA device ordinal, 0 to 1023 (default: ${DEFAULT-VALUE}); HELLO must name it.")
    int device;

    @Option(names = "--ring-depth", defaultValue = "4", description = "Staging ring slots per session, 1 to 1024 (default: ${DEFAULT-VALUE}).")
    int ringDepth;

    @Option(names = "--slots", defaultValue = "1048576",
            description = "KV-cache slots the store holds (the engine's KV pool in tokens), 1 to 1073741824 (default: ${DEFAULT-VALUE}).")
    int slots;

    @Option(names = "--retain-request-gib", description = "Keep at most this many GiB of finished request files, deleting the oldest "
            + "(the store rolls every minute), 0.01 to 1048576 (default: half of the free space when the store opens).")
    Double retainRequestGib;

    @Option(names = "--progress-ms", defaultValue = "5000", description = "Progress line interval in ms, 100 to 3600000 (default: ${DEFAULT-VALUE}).")
    long progressMs;

    @Option(names = "--once", description = "Exit after the first engine session ends: 0 when it ended with GOODBYE, 1 otherwise.")
    boolean once;

    private final AtomicReference<StoreException> storeFailure = new AtomicReference<>();
    private final AtomicReference<CommandException> memoryRefusal = new AtomicReference<>();

    private void validate() {
        if (!List.of("host", "cuda").contains(backend)) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--backend': '" + backend + "'; expected host or cuda");
        }
        if (!List.of("host", "device").contains(pack)) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--pack': '" + pack + "'; expected host or device");
        }
        if (pack.equals("device") && !backend.equals("cuda")) {
            throw new ParameterException(spec.commandLine(), "--pack device needs --backend cuda (the " + backend + " backend packs on the host)");
        }
        range("--device", device, 0, 1023);
        range("--ring-depth", ringDepth, 1, MAX_RING_DEPTH);
        range("--slots", slots, 1, 1 << 30);
        range("--progress-ms", progressMs, 100, 3_600_000);
        if (retainRequestGib != null && !(retainRequestGib >= 0.01 && retainRequestGib <= 1 << 20)) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--retain-request-gib': " + retainRequestGib
                    + " is not in 0.01..1048576");
        }
        int socketBytes = socket.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
        if (socketBytes == 0 || socketBytes > 107) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--socket': '" + socket + "' is " + socketBytes
                    + " bytes; a Unix domain socket path holds 1 to 107");
        }
        if (store.toString().isBlank()) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--store': '" + store + "' is empty; name a folder");
        }
        if (Files.exists(store) && !Files.isDirectory(store)) {
            throw new CommandException(ExitStatus.STORE, "--store " + store + " exists and is not a folder");
        }
        // the row size and the step size come with the engine's HELLO: at start, the least the slots need
        MemoryBudget.of("--slots " + slots)
                .direct("slot store " + slots + " slots x at least 1 B a row (the row size comes with the engine's HELLO)", slots)
                .heap("slot stamps " + slots + " slots x " + SlotStore.HEAP_BYTES_PER_SLOT + " B", slots * (long) SlotStore.HEAP_BYTES_PER_SLOT)
                .shortfall(MemoryBudget.Limits.ofThisJvm()).ifPresent(problem -> {
                    throw new ParameterException(spec.commandLine(), problem);
                });
    }

    /**
     * What the first HELLO's shape and {@code max_tokens} make the options allocate: the slot store and, on the host
     * backend, the staging ring's staging and host copies (CUDA memory is outside the JVM's limits).
     */
    private MemoryBudget memoryBudget(RoutingShape shape, int maxStepTokens) {
        MemoryBudget budget = MemoryBudget.of("--slots " + slots + " --ring-depth " + ringDepth + " with the engine's " + shape.describe()
                + " and max_tokens=" + maxStepTokens)
                .direct("slot store " + slots + " slots x " + shape.rowBytes() + " B", MemoryBudget.times(slots, shape.rowBytes()))
                .heap("slot stamps " + slots + " slots x " + SlotStore.HEAP_BYTES_PER_SLOT + " B", slots * (long) SlotStore.HEAP_BYTES_PER_SLOT);
        if (backend.equals("host")) {
            budget.direct("staging ring " + ringDepth + " slots x 2 copies for " + maxStepTokens + " tokens a step",
                    MemoryBudget.ringBytes(shape, maxStepTokens, ringDepth, 2));
        }
        return budget;
    }

    private void range(String option, long value, long min, long max) {
        if (value < min || value > max) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '" + option + "': " + value + " is not in " + min + ".." + max);
        }
    }

    /** The store of an engine's shape: files roll every minute, as {@code r3 run}'s, so retention can delete whole files. */
    private ChronicleRoutingSink openStore(RoutingShape shape, int maxStepTokens) {
        memoryBudget(shape, maxStepTokens).shortfall(MemoryBudget.Limits.ofThisJvm()).ifPresent(problem -> {
            // the engine is answered FAILED code 2 with this line, before anything is allocated or created
            CommandException refused = new CommandException(ExitStatus.USAGE, problem);
            memoryRefusal.set(refused);
            throw refused;
        });
        StoreConfig.Builder config = StoreConfig.builder(store, shape, slots).rollCycle(LegacyRollCycles.MINUTELY)
                .maxStepTokens(Math.max(16384, maxStepTokens));
        if (retainRequestGib != null) {
            config.maxRequestBytes((long) (retainRequestGib * (1L << 30)));
        }
        try {
            return ChronicleRoutingSink.open(config.build());
        } catch (StoreException e) {
            storeFailure.set(e);
            throw e;
        }
    }

    /** Serves until stopped (status 0), or with {@code --once} until the first session ended (0 after a FAREWELL, else 1). */
    @Override
    public Integer call() throws InterruptedException {
        validate();
        PrintWriter out = spec.commandLine().getOut();
        InterprocessDevice ipc = openDevice();
        AtomicReference<SessionSummary> first = new AtomicReference<>();
        CountDownLatch stop = new CountDownLatch(1);
        SidecarServer server;
        try {
            server = SidecarServer.builder().socket(socket).device(ipc).deviceOrdinal(device).ringDepth(ringDepth)
                    .storeName(store.toAbsolutePath().toString()).progressInterval(Duration.ofMillis(progressMs))
                    .log(line -> print(out, "r3 sidecar: " + line))
                    .onSessionEnd(summary -> {
                        if (once && first.compareAndSet(null, summary)) {
                            stop.countDown();
                        }
                    })
                    .sinks(this::openStore)
                    .bind();
        } catch (IllegalArgumentException e) {
            ipc.close();
            throw new CommandException(ExitStatus.OUTPUT_EXISTS, "--socket " + e.getMessage(), e);
        } catch (RuntimeException e) {
            ipc.close();
            throw new CommandException(ExitStatus.UNAVAILABLE, "--socket " + e.getMessage(), e);
        }
        Thread hook = new Thread(() -> {
            server.close();
            ipc.close();
            stop.countDown();
        }, "r3-sidecar-stop");
        Runtime.getRuntime().addShutdownHook(hook);
        print(out, "r3 sidecar: listening on " + socket + " (" + ipc.name() + (backend.equals("cuda") ? ", pack on the " + pack : "") + ")");
        stop.await();
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException e) {
            return ExitStatus.OK.code(); // the JVM is shutting down: the hook closes everything
        }
        try {
            server.close();
        } finally {
            ipc.close();
        }
        SessionSummary summary = first.get();
        if (summary == null || summary.outcome() == SessionSummary.Outcome.FAREWELL) {
            return ExitStatus.OK.code();
        }
        CommandException refused = memoryRefusal.get();
        if (refused != null) {
            throw refused;
        }
        StoreException failed = storeFailure.get();
        if (failed != null) {
            throw new CommandException(ExitStatus.STORE, failed.getMessage(), failed);
        }
        throw new CommandException(ExitStatus.CHECK_FAILED, summary.describe());
    }

    private InterprocessDevice openDevice() {
        RoutingDevice opened;
        try {
            opened = Backends.open(backend, device, pack.equals("device") ? PackSite.DEVICE : PackSite.HOST);
        } catch (IllegalArgumentException e) {
            throw new CommandException(ExitStatus.UNAVAILABLE, "--backend " + e.getMessage(), e);
        }
        if (opened instanceof InterprocessDevice ipc) {
            return ipc;
        }
        opened.close();
        throw new CommandException(ExitStatus.UNAVAILABLE, "--backend " + backend + ": " + opened.getClass().getSimpleName()
                + " cannot open memory another process exported (it does not implement InterprocessDevice yet)");
    }

    private static void print(PrintWriter out, String line) {
        synchronized (out) {
            out.println(line);
            out.flush();
        }
    }

    /** Runs the command and exits with its {@link ExitStatus}. */
    public static void main(String[] args) {
        System.exit(CommandErrors.install(new CommandLine(new SidecarCommand())).execute(args));
    }
}
