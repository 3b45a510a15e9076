package dev.routingreplay.examples.cluster;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** A {@link RolloutNode} child JVM of a test: started with the test's classpath and Chronicle flags, its output in a file. */
final class NodeProcess implements AutoCloseable {
    private final Process process;
    private final Path out;

    private NodeProcess(Process process, Path out) {
        this.process = process;
        this.out = out;
    }

    /** Starts a node with {@code args} (see {@link RolloutNode}), its output going to {@code out}. */
    static NodeProcess start(Path out, String... args) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (arg.startsWith("--add-") || arg.startsWith("-Dchronicle")) {
                cmd.add(arg);
            }
        }
        cmd.addAll(List.of("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", System.getProperty("java.class.path"), RolloutNode.class.getName()));
        cmd.addAll(List.of(args));
        return new NodeProcess(new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(out.toFile()))
                .start(), out);
    }

    /** Waits up to {@code seconds} for a line of its output that starts with {@code prefix}; returns it, or null. */
    String await(String prefix, long seconds) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (System.nanoTime() < deadline) {
            for (String line : Files.readAllLines(out, StandardCharsets.UTF_8)) {
                if (line.startsWith(prefix)) {
                    return line;
                }
            }
            if (!process.isAlive()) {
                return null;
            }
            Thread.sleep(50);
        }
        return null;
    }

    /** Its output so far. */
    String output() throws IOException {
        return Files.readString(out, StandardCharsets.UTF_8);
    }

    /** {@code kill -9}, and waits up to 10 s for it to go. */
    void kill() throws InterruptedException {
        process.descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
    }

    @Override
    public void close() throws InterruptedException {
        kill();
    }
}
