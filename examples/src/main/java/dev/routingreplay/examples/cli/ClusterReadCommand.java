package dev.routingreplay.examples.cli;

import dev.routingreplay.cluster.Announcement;
import dev.routingreplay.cluster.ClusterReadException;
import dev.routingreplay.cluster.ClusterReader;
import dev.routingreplay.cluster.ClusterRecord;
import dev.routingreplay.cluster.Slice;
import dev.routingreplay.sink.NpyWriter;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.HdrHistogram.Histogram;
import org.reactivestreams.Subscription;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Sinks;

/**
 * {@code r3 cluster-read}: a trainer's reader of the cluster ({@link ClusterReader}) on the command line. It joins a
 * consumer group, fetches every announced request (or its slice) from the node that holds it and, per request, prints a
 * JSON line ({@code --json}), writes the routing as {@code .npy} ({@code --npy-dir}), or just counts; at the end it prints
 * a summary: requests, bytes, rates and the latency from the record being read as durable on its node to its hand-off
 * here (p50, p99, max; HdrHistogram). With {@code --ack-stdin} each request counts as handed off only when a line
 * arrives on standard input, so the group commits only what the process reading the output took (the Python module
 * {@code r3/cluster.py} works so).
 */
@Command(name = "cluster-read", mixinStandardHelpOptions = true,
        description = "Read the cluster as a trainer: announcements from Kafka (consumer group), payloads fetched from the nodes.")
public final class ClusterReadCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    VerboseOption verbose;

    @Option(names = "--bootstrap", required = true, description = "Kafka bootstrap servers, host:port[,host:port...].")
    String bootstrap;

    @Option(names = "--group", required = true, description = "Consumer group of the trainer ranks that share the requests.")
    String group;

    @Option(names = "--topic", defaultValue = "r3-requests", description = "Announcements' topic (default: ${DEFAULT-VALUE}).")
    String topic;

    @Option(names = "--layers", description = "MoE layers FROM:TO to fetch (a pipeline-parallel rank's), default all.")
    String layers;

    @Option(names = "--start", defaultValue = "0", description = "First row to fetch of each request (default: ${DEFAULT-VALUE}).")
    int start;

    @Option(names = "--max-in-flight", defaultValue = "16", description = "Most fetches at once, 1 to 4096 (default: ${DEFAULT-VALUE}).")
    int maxInFlight;

    @Option(names = "--connect-timeout-ms", defaultValue = "30000",
            description = "Longest wait for a Kafka broker at --bootstrap to answer first, in ms, 1 to 3600000 (default: ${DEFAULT-VALUE}); "
                    + "past it the command exits with status 6 naming the bootstrap servers.")
    long connectTimeoutMs;

    @Option(names = "--limit", description = "Stop after this many requests (default: never).")
    Long limit;

    @Option(names = "--idle-exit-ms", description = "Stop when no request came for this long (default: never).")
    Long idleExitMs;

    @Option(names = "--json", description = "Print one JSON line per request: the announcement, partition, offset, npy path, latency.")
    boolean json;

    @Option(names = "--npy-dir", description = "Write each request's routing to <dir>/<partition>-<offset>.npy.")
    Path npyDir;

    @Option(names = "--ack-stdin", description = "Hand a request off only when a line arrives on standard input (then commit).")
    boolean ackStdin;

    /** Reads until the limit, the idle time or a stop; 0 then, 6 when a node stayed away or Kafka failed. */
    @Override
    public Integer call() throws Exception {
        if (maxInFlight < 1 || maxInFlight > 4096) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--max-in-flight': " + maxInFlight
                    + " is not in 1..4096");
        }
        if (start < 0) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--start': " + start + " is negative");
        }
        if (connectTimeoutMs < 1 || connectTimeoutMs > TimeUnit.HOURS.toMillis(1)) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--connect-timeout-ms': " + connectTimeoutMs
                    + " is not in 1..3600000");
        }
        if ((limit != null && limit < 1) || (idleExitMs != null && idleExitMs < 1)) {
            throw new ParameterException(spec.commandLine(), "Invalid value: --limit and --idle-exit-ms must be positive");
        }
        CountDownLatch ended = new CountDownLatch(1);
        ClusterReader reader;
        try {
            reader = ClusterReader.builder(bootstrap, group, topic).slice(Slice.parse(start, layers)).maxInFlight(maxInFlight)
                    .connectTimeout(Duration.ofMillis(connectTimeoutMs)).onClose(ended::countDown).build();
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), "Invalid value: " + e.getMessage());
        }
        if (npyDir != null) {
            Files.createDirectories(npyDir);
        }
        PrintWriter out = spec.commandLine().getOut();
        BufferedReader acks = ackStdin ? new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)) : null;
        Histogram latency = new Histogram(TimeUnit.HOURS.toMicros(1), 3);
        AtomicLong requests = new AtomicLong();
        AtomicLong bytes = new AtomicLong();
        AtomicLong lastAt = new AtomicLong(System.nanoTime());
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CountDownLatch stop = new CountDownLatch(1);
        Sinks.Empty<Void> stopSignal = Sinks.empty();
        // SIGTERM: stop gracefully, and keep the JVM up until the reader committed and left the group (30 s at most)
        Thread hook = new Thread(() -> {
            stop.countDown();
            try {
                ended.await(30, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "r3-cluster-read-stop");
        Runtime.getRuntime().addShutdownHook(hook);
        long started = System.nanoTime();
        BaseSubscriber<ClusterRecord> trainer = new BaseSubscriber<>() {
            @Override
            protected void hookOnSubscribe(Subscription s) {
                request(limit == null ? Long.MAX_VALUE : limit);
            }

            @Override
            protected void hookOnNext(ClusterRecord r) {
                long micros = ChronoUnit.MICROS.between(Instant.EPOCH, Instant.now()) - r.announcement().timeMicros();
                latency.recordValue(Math.max(0, Math.min(micros, latency.getHighestTrackableValue())));
                bytes.addAndGet(r.routing().rows().remaining());
                Path file = npyDir == null ? null : npyDir.resolve(r.partition() + "-" + r.offset() + ".npy");
                if (file != null) {
                    NpyWriter.write(r.routing(), file);
                }
                if (json) {
                    out.println(line(r, file, micros));
                    out.flush();
                }
                if (acks != null) {
                    awaitAck(acks, r.announcement());
                }
                lastAt.set(System.nanoTime());
                if (requests.incrementAndGet() == (limit == null ? -1 : limit)) {
                    stop.countDown();
                }
            }

            @Override
            protected void hookOnError(Throwable t) {
                if (!(t instanceof InputClosed)) {
                    failure.set(t);
                }
                stop.countDown();
            }
        };
        reader.read(stopSignal.asMono()).subscribe(trainer);
        try {
            while (!stop.await(100, TimeUnit.MILLISECONDS)) {
                if (idleExitMs != null && System.nanoTime() - lastAt.get() > TimeUnit.MILLISECONDS.toNanos(idleExitMs)) {
                    break;
                }
            }
        } finally {
            // a graceful stop: the reader commits what was handed off and leaves the group, then ends (onClose)
            stopSignal.tryEmitEmpty();
            if (!ended.await(30, TimeUnit.SECONDS)) {
                trainer.dispose();
                ended.await(30, TimeUnit.SECONDS);
            }
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // the hook is running: the JVM is stopping anyway
            }
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        Throwable t = failure.get();
        if (t instanceof ClusterReadException && requests.get() == 0 && t.getMessage().startsWith("no Kafka broker answered")) {
            // never connected: the one line says so, with the option that sets the wait; there is nothing to sum up
            throw new CommandException(ExitStatus.UNAVAILABLE, t.getMessage() + " (--connect-timeout-ms " + connectTimeoutMs + ")", t);
        }
        spec.commandLine().getErr().printf("r3 cluster-read: %d requests, %.1f MB in %.1f s (%.0f requests/s, %.1f MB/s); durable-to-trainer "
                + "latency p50 %.1f ms, p99 %.1f ms, max %.1f ms%n", requests.get(), bytes.get() / 1e6, seconds, requests.get() / seconds,
                bytes.get() / 1e6 / seconds, latency.getValueAtPercentile(50) / 1e3, latency.getValueAtPercentile(99) / 1e3,
                latency.getMaxValue() / 1e3);
        spec.commandLine().getErr().flush();
        if (t != null) {
            throw new CommandException(ExitStatus.UNAVAILABLE, t instanceof ClusterReadException ? t.getMessage() : t.toString(), t);
        }
        return ExitStatus.OK.code();
    }

    /** Standard input closed (the reading process stops): a graceful end; the request waiting for its ack stays uncommitted. */
    private static final class InputClosed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        InputClosed() {
            super("standard input closed", null, false, false);
        }
    }

    private static String line(ClusterRecord r, Path file, long latencyMicros) {
        String a = r.announcement().toJson();
        return a.substring(0, a.length() - 1) + ",\"partition\":" + r.partition() + ",\"offset\":" + r.offset() + ",\"rows\":"
                + r.routing().seqLen() + ",\"layers\":" + r.routing().shape().moeLayers() + ",\"npy\":"
                + (file == null ? "null" : "\"" + file.toAbsolutePath().toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"")
                + ",\"latencyMicros\":" + latencyMicros + "}";
    }

    private static void awaitAck(BufferedReader acks, Announcement a) {
        try {
            if (acks.readLine() == null) {
                throw new InputClosed();
            }
        } catch (IOException e) {
            throw new ClusterReadException(a, "cannot read the acknowledgement from standard input: " + e.getMessage(), e);
        }
    }
}
