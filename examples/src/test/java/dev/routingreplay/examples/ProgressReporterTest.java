package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.PipelineMetrics;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The progress reporter prints while open, and leaves no thread behind once closed. */
class ProgressReporterTest {
    private static PipelineMetrics metrics() {
        RoutingShape shape = new RoutingShape(2, 2, 8);
        return CapturePipeline.builder().device(new HostDevice()).sink(new MemoryRoutingSink(shape, 16)).ringDepth(2)
                .maxTokensPerStep(4).build().metrics();
    }

    private static List<Thread> progressThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith(ProgressReporter.THREAD_NAME))
                .filter(Thread::isAlive).toList();
    }

    @Test
    void closeEndsTheThreadAndTheLines() throws Exception {
        assertEquals(List.of(), progressThreads(), "no reporter thread before the test");
        StringWriter text = new StringWriter();
        PrintWriter out = new PrintWriter(text, true);
        try (ProgressReporter reporter = new ProgressReporter(metrics(), new EngineStats(), 4, 10, out, Duration.ofMillis(10))) {
            long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
            while (text.toString().lines().count() < 2 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            List<Thread> running = progressThreads();
            assertEquals(1, running.size(), running.toString());
            assertTrue(running.get(0).isDaemon(), "a daemon thread never keeps the JVM alive");
        }
        assertEquals(List.of(), progressThreads(), "the thread has ended when close returns");
        long lines = text.toString().lines().count();
        assertTrue(lines >= 2, text.toString());
        Thread.sleep(50);
        assertEquals(lines, text.toString().lines().count(), "no line after close");
    }

    @Test
    void aNonPositiveIntervalIsRefused() {
        var e = assertThrows(IllegalArgumentException.class,
                () -> new ProgressReporter(metrics(), new EngineStats(), 4, 10, new PrintWriter(new StringWriter()), Duration.ZERO));
        assertTrue(e.getMessage().contains("progress interval must be positive, was PT0S"), e.getMessage());
    }
}
