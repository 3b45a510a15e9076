package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.StepFault;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.RequestRouting;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The session's pipeline alone, on the host backend, with no connection and no protocol: it opens the engine's buffers
 * and a pipeline at HELLO, feeds steps and events, tells request faults and its failure to its listener, and drains
 * (everything stored, buffers closed) once.
 */
class SessionPipelineTest {
    private static final int LAYERS = 2;
    private static final int TOP_K = 2;
    private static final int MAX_TOKENS = 4;
    private static final RoutingShape SHAPE = new RoutingShape(LAYERS, TOP_K, 16);

    @TempDir
    Path dir;

    private final HostDevice device = new HostDevice();
    private final List<Object> told = new CopyOnWriteArrayList<>();
    private final CountDownLatch failed = new CountDownLatch(1);
    private final SessionPipeline.Listener listener = new SessionPipeline.Listener() {
        @Override
        public void requestFault(RequestFault fault) {
            told.add(fault);
        }

        @Override
        public void stepFault(StepFault fault) {
            told.add(fault);
        }

        @Override
        public void failed(Throwable error) {
            told.add(error);
            failed.countDown();
        }
    };

    /** One buffer in a file: int32 ids [MAX_TOKENS, LAYERS, TOP_K] (expert 2k + layer), then int32 slots (slot = token). */
    private EngineMessage.Hello hello() throws IOException {
        int routingBytes = MAX_TOKENS * LAYERS * TOP_K * 4;
        ByteBuffer b = ByteBuffer.allocate(routingBytes + MAX_TOKENS * 4).order(ByteOrder.nativeOrder());
        for (int t = 0; t < MAX_TOKENS; t++) {
            for (int l = 0; l < LAYERS; l++) {
                for (int k = 0; k < TOP_K; k++) {
                    b.putInt(2 * k + l);
                }
            }
        }
        for (int t = 0; t < MAX_TOKENS; t++) {
            b.putInt(t);
        }
        Path file = Files.write(dir.resolve("engine.buf"), b.array());
        byte[] path = file.toString().getBytes(StandardCharsets.UTF_8);
        return new EngineMessage.Hello(1, Backend.HOST.code(), 0, LAYERS, TOP_K, SHAPE.numExperts(), 4, 4, MAX_TOKENS, "test",
                List.of(new EngineMessage.ExportedBuffer(path, 0, routingBytes, path, routingBytes, MAX_TOKENS * 4, new byte[0])));
    }

    private SessionPipeline pipeline(MemoryRoutingSink sink) {
        return new SessionPipeline(7, device, 2, new SharedSink((shape, maxTokens) -> sink), listener, told::add);
    }

    @Test
    void feedsStepsAndEventsAndStoresEverythingByTheTimeItDrained() throws Exception {
        MemoryRoutingSink sink = new MemoryRoutingSink(SHAPE, 8);
        SessionPipeline pipeline = pipeline(sink);
        List<byte[]> handles = pipeline.open(hello(), SHAPE);
        assertEquals(1, handles.size(), "one consumed event per buffer");
        assertEquals(1, pipeline.bufferCount());
        assertEquals(4, pipeline.slotBytes());
        pipeline.emit(new RequestAdmitted("r1", 0));
        pipeline.step(1, 0, 3, null);
        pipeline.emit(new RequestFinished("r1", new int[] {0, 1, 2}));
        pipeline.emit(new RequestAborted("never-admitted"));
        pipeline.drain();
        RequestRouting stored = sink.finished("r1");
        assertNotNull(stored, "stored before drain returned");
        assertEquals(3, stored.seqLen());
        assertEquals(3, stored.id(2, 1, 1), "token 2, layer 1, k 1: expert 2k + layer");
        assertEquals(1, told.size(), "the abort of an id that is not live is a request fault: " + told);
        assertTrue(told.get(0) instanceof RequestFault f && f.requestId().equals("never-admitted"), told.toString());
        assertNull(pipeline.error());
        assertDoesNotThrow(pipeline::drain, "a second drain returns at once");
    }

    @Test
    void aFailedPipelineIsToldToTheListenerAndLaterEventsAreRefusedAsPipelineFailures() throws Exception {
        MemoryRoutingSink sink = new MemoryRoutingSink(SHAPE, 8) {
            @Override
            public int scatter(CapturedStep step) {
                throw new IllegalStateException("disk full");
            }
        };
        SessionPipeline pipeline = pipeline(sink);
        pipeline.open(hello(), SHAPE);
        pipeline.step(1, 0, 1, null);
        assertTrue(failed.await(10, TimeUnit.SECONDS), "the listener is told the pipeline failed");
        assertNotNull(pipeline.error());
        assertTrue(told.get(0) == pipeline.error(), "error() returns the error the listener got: " + told);
        ProtocolException e = assertThrows(ProtocolException.class, () -> pipeline.emit(new RequestAdmitted("r2", 0)));
        assertEquals(FailureCode.PIPELINE, e.code());
        assertTrue(e.getMessage().contains("disk full"), e.getMessage());
        pipeline.drain();
    }

    @Test
    void aPipelineNeverOpenedDrainsToNothing() {
        SessionPipeline pipeline = pipeline(new MemoryRoutingSink(SHAPE, 8));
        pipeline.drain();
        pipeline.drain();
        assertNull(pipeline.error());
        assertTrue(told.isEmpty());
    }
}
