package dev.routingreplay.bridge;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.InterprocessDevice;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.EngineFeed;
import dev.routingreplay.core.pipeline.StepFault;
import dev.routingreplay.core.sink.RoutingSink;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.function.Consumer;
import org.reactivestreams.Subscription;
import reactor.core.publisher.BaseSubscriber;

/**
 * One engine session's capture pipeline and what it reads: the engine's buffers ({@link EngineBuffers}), a
 * {@link CapturePipeline} over the server's shared sink, and the {@link EngineFeed} that feeds it. It knows nothing of
 * frames or replies: {@link SessionProtocol} decides what to feed, this feeds it.
 *
 * <p>Lifecycle: {@link #open} at HELLO subscribes the pipeline; {@link #step} and {@link #emit} feed it in order;
 * {@link #drain} (once; later calls return at once) completes the feed, waits until the pipeline terminated and
 * released its ring, then closes the opened buffers and events. A session that never opened drains to nothing.
 *
 * <p>Threads: every method but {@link #error} runs on the session's feed thread ({@code emit} and {@code step} wait
 * while the ring is full; {@code drain} waits for the store). The {@link Listener} is called on the pipeline's sink
 * thread.
 */
final class SessionPipeline implements SessionProtocol.Pipeline {
    /** What the pipeline tells its session; called on the pipeline's sink thread. */
    interface Listener {
        /** A request's event was refused as that request's fault (it took no effect); the run goes on. */
        void requestFault(RequestFault fault);

        /** A step carried ids or slots out of range (their rows were dropped); the run goes on. */
        void stepFault(StepFault fault);

        /** The pipeline failed: nothing more is stored. Called after {@link #error()} returns the error. */
        void failed(Throwable error);
    }

    private final long id;
    private final String name;
    private final InterprocessDevice device;
    private final int ringDepth;
    private final SharedSink sharedSink;
    private final Listener listener;
    private final Consumer<String> log;
    private final CountDownLatch terminated = new CountDownLatch(1);
    private volatile Throwable error;
    // confined to the feed thread
    private EngineBuffers buffers;
    private CapturePipeline pipeline;
    private EngineFeed feed;
    private boolean drained;

    /**
     * @param id the session's number: the pipeline is named {@code sidecar-ID} (its sink thread {@code r3-sink-sidecar-ID})
     * @param log where a failure to close the buffers is told (the session goes on ending)
     */
    SessionPipeline(long id, InterprocessDevice device, int ringDepth, SharedSink sharedSink, Listener listener, Consumer<String> log) {
        this.id = id;
        this.name = "sidecar-" + id;
        this.device = device;
        this.ringDepth = ringDepth;
        this.sharedSink = sharedSink;
        this.listener = listener;
        this.log = log;
    }

    @Override
    public List<byte[]> open(EngineMessage.Hello hello, RoutingShape shape) {
        if (buffers != null) {
            throw new IllegalStateException(name + " is open already");
        }
        RoutingSink sink = sharedSink.acquire(shape, hello.maxTokens());
        buffers = EngineBuffers.open(device, hello, shape);
        try {
            pipeline = CapturePipeline.builder().name(name).device(device).sink(sink).ringDepth(ringDepth)
                    .maxTokensPerStep((int) hello.maxTokens()).onStepFault(listener::stepFault).build();
        } catch (IllegalArgumentException e) {
            throw HelloCheck.refuse("max_tokens=" + hello.maxTokens() + ": " + e.getMessage());
        }
        feed = new EngineFeed();
        feed.flux().transform(pipeline).subscribe(new Outcome());
        return buffers.consumedHandles();
    }

    @Override
    public int bufferCount() {
        return buffers.count();
    }

    @Override
    public int slotBytes() {
        return buffers.slotBytes();
    }

    @Override
    public long step(long stepId, int buffer, int tokens, byte[] slots) {
        buffers.ready(buffer).waitOnCompute();
        SlotMappingBuffer mapping = slots == null ? buffers.slots(buffer) : buffers.uploadSlots(buffer, slots);
        long waited = emit(new CaptureStep(stepId, tokens, buffers.routing(buffer), mapping));
        buffers.consumed(buffer).recordOnCompute();
        return waited;
    }

    /** {@link EngineFeed#emit}, with a pipeline failure turned into FAILED code 3 carrying the pipeline's error. */
    @Override
    public long emit(EngineEvent event) {
        try {
            return feed.emit(event);
        } catch (IllegalStateException e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            throw new ProtocolException(FailureCode.PIPELINE, cause.getMessage(), e);
        }
    }

    @Override
    public void drain() {
        if (drained) {
            return;
        }
        drained = true;
        if (feed != null) {
            feed.complete();
            awaitUninterruptibly(terminated);
            pipeline.released().block();
        }
        if (buffers != null) {
            try {
                buffers.close();
            } catch (RuntimeException e) {
                log.accept("session " + id + ": " + e.getMessage());
            }
        }
    }

    @Override
    public Throwable error() {
        return error;
    }

    private static void awaitUninterruptibly(CountDownLatch latch) {
        boolean interrupted = false;
        while (true) {
            try {
                latch.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /** The pipeline's output: request faults and the terminal signal go to the listener; the rest is ignored. */
    private final class Outcome extends BaseSubscriber<EngineEvent> {
        @Override
        protected void hookOnSubscribe(Subscription subscription) {
            subscription.request(Long.MAX_VALUE);
        }

        @Override
        protected void hookOnNext(EngineEvent event) {
            if (event instanceof RequestFault fault) {
                listener.requestFault(fault);
            }
        }

        @Override
        protected void hookOnComplete() {
            terminated.countDown();
        }

        @Override
        protected void hookOnError(Throwable e) {
            error = e;
            terminated.countDown();
            listener.failed(e);
        }
    }
}
