package dev.routingreplay.core.host;

import dev.routingreplay.core.device.CaptureListener;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.memory.NativeMemory;
import java.nio.ByteBuffer;
import java.util.Queue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;
import reactor.util.concurrent.Queues;

/**
 * The host backend's staging ring. The pack runs synchronously in {@link #enqueueCapture} on the caller's thread,
 * which plays the compute stream (so the engine may overwrite its buffers as soon as the call returns); the copy
 * from staging to host memory runs on one ordered thread, {@code r3-host-copy-N}, which plays the copy stream and
 * completes captures in the order they were enqueued. Enqueueing never blocks: a bounded single-producer queue
 * (the caller is serialized by Reactive Streams) and an unpark hand the copy over.
 */
final class HostStagingRing implements StagingRing {
    private static final AtomicInteger RING_IDS = new AtomicInteger();

    private final RingSpec spec;
    private final RingSlotLayout layout;
    private final NativeMemory memory;
    private final ByteBuffer[] staging;
    private final ByteBuffer[] host;
    private final CopyTask[] copies;
    private final Queue<CopyTask> copyQueue;
    private final Thread copyStream;
    private volatile boolean copyStreamParked;
    private volatile boolean stopping;
    private boolean closed;

    HostStagingRing(RingSpec spec, NativeMemory memory) {
        this.spec = spec;
        this.layout = spec.layout();
        this.memory = memory;
        int depth = spec.depth();
        this.staging = new ByteBuffer[depth];
        this.host = new ByteBuffer[depth];
        this.copies = new CopyTask[depth];
        for (int i = 0; i < depth; i++) {
            staging[i] = memory.allocate(layout.totalBytes());
            host[i] = memory.allocate(layout.totalBytes());
            copies[i] = new CopyTask(i);
        }
        // A queue as deep as the ring: an in-flight slot is queued at most once, so offers never fail.
        this.copyQueue = Queues.<CopyTask>get(depth).get();
        this.copyStream = new Thread(this::runCopies, "r3-host-copy-" + RING_IDS.incrementAndGet());
        copyStream.setDaemon(true);
        copyStream.start();
    }

    /**
     * The copy stream: runs queued copies in order; with none, idles with Agrona's back-off (parks from 1 us doubling
     * up to 10 ms), and an enqueue unparks it at once.
     */
    private void runCopies() {
        IdleStrategy idle = new BackoffIdleStrategy(0, 0, TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MILLISECONDS.toNanos(10));
        for (;;) {
            CopyTask task = copyQueue.poll();
            if (task == null) {
                copyStreamParked = true;
                task = copyQueue.poll();
                if (task == null) {
                    if (stopping) {
                        copyStreamParked = false;
                        return;
                    }
                    idle.idle();
                }
                copyStreamParked = false;
                if (task == null) {
                    continue;
                }
            }
            idle.reset();
            task.run();
        }
    }

    @Override
    public RingSpec spec() {
        return spec;
    }

    @Override
    public synchronized void enqueueCapture(int index, CaptureStep step, CaptureListener listener) {
        if (closed) {
            throw new IllegalStateException("staging ring is closed; cannot capture " + step.describe());
        }
        if (!(step.routing().buffer() instanceof HostDeviceBuffer routing)
                || !(step.slotMapping().buffer() instanceof HostDeviceBuffer slots)) {
            throw new IllegalArgumentException(step.describe() + ": routing and slot mapping buffers must come from the host device, were "
                    + step.routing().buffer().getClass().getSimpleName() + " and " + step.slotMapping().buffer().getClass().getSimpleName());
        }
        if (!routing.belongsTo(memory) || !slots.belongsTo(memory)) {
            throw new IllegalArgumentException(step.describe() + ": the " + (routing.belongsTo(memory) ? "slot mapping" : "routing")
                    + " buffer belongs to another HostDevice than this ring's; allocate the engine's buffers on the pipeline's device");
        }
        HostPack.pack(routing.memory(), step.routing().elementType(), slots.memory(), step.slotMapping().elementType(),
                step.tokenCount(), spec, layout, staging[index]);
        CopyTask copy = copies[index];
        copy.tokens = step.tokenCount();
        copy.listener = listener;
        if (!copyQueue.offer(copy)) {
            throw new IllegalStateException("ring slot " + index + " is already queued for copy; the ring is over-committed");
        }
        if (copyStreamParked) {
            LockSupport.unpark(copyStream);
        }
    }

    @Override
    public synchronized ByteBuffer hostSlot(int index) {
        if (closed) {
            throw new IllegalStateException("staging ring is closed; its host slot " + index + " is freed");
        }
        return host[index];
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        stopping = true;
        LockSupport.unpark(copyStream);
        boolean interrupted = false;
        // queued copies finish first: freeing memory under a running copy would corrupt the heap
        while (copyStream.isAlive()) {
            try {
                copyStream.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        for (int i = 0; i < staging.length; i++) {
            memory.free(staging[i]);
            memory.free(host[i]);
        }
    }

    /** The copy of one ring slot; preallocated, re-armed per step. Fields are published by the executor's queue. */
    private final class CopyTask implements Runnable {
        private final int index;
        int tokens;
        CaptureListener listener;

        CopyTask(int index) {
            this.index = index;
        }

        @Override
        public void run() {
            CaptureListener l = listener;
            Throwable error = null;
            try {
                ByteBuffer from = staging[index];
                ByteBuffer to = host[index];
                to.put(0, from, 0, layout.headerBytes(tokens));
                to.put(layout.rowsOffset(), from, layout.rowsOffset(), layout.rowBytesFor(tokens));
            } catch (RuntimeException e) {
                error = e;
            }
            l.onCaptureComplete(index, error);
        }
    }
}
