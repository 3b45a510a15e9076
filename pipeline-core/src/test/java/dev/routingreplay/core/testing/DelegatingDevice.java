package dev.routingreplay.core.testing;

import dev.routingreplay.core.device.CaptureListener;
import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicInteger;

/** A device that wraps another and lets a test watch or fail captures; the real device still moves the bytes. */
public class DelegatingDevice implements RoutingDevice {
    /** What a test may do around each enqueue. */
    public interface Hook {
        /** Called before the real enqueue; return a non-null error to fail this capture instead. */
        Throwable beforeEnqueue(CaptureStep step);
    }

    private final RoutingDevice delegate;
    private final Hook hook;
    /** Captures enqueued and not yet completed. */
    public final AtomicInteger inFlight = new AtomicInteger();
    /** The largest {@link #inFlight} seen. */
    public final AtomicInteger maxInFlight = new AtomicInteger();
    /** Captures enqueued in all. */
    public final AtomicInteger enqueued = new AtomicInteger();

    /** Wraps {@code delegate}, calling {@code hook} before each enqueue. */
    public DelegatingDevice(RoutingDevice delegate, Hook hook) {
        this.delegate = delegate;
        this.hook = hook;
    }

    @Override
    public String name() {
        return "watched " + delegate.name();
    }

    @Override
    public StagingRing openRing(RingSpec spec) {
        StagingRing ring = delegate.openRing(spec);
        return new StagingRing() {
            @Override
            public RingSpec spec() {
                return ring.spec();
            }

            @Override
            public void enqueueCapture(int index, CaptureStep step, CaptureListener listener) {
                enqueued.incrementAndGet();
                maxInFlight.accumulateAndGet(inFlight.incrementAndGet(), Math::max);
                Throwable failure = hook.beforeEnqueue(step);
                CaptureListener counting = (i, error) -> {
                    inFlight.decrementAndGet();
                    listener.onCaptureComplete(i, failure != null ? failure : error);
                };
                ring.enqueueCapture(index, step, counting);
            }

            @Override
            public ByteBuffer hostSlot(int index) {
                return ring.hostSlot(index);
            }

            @Override
            public void close() {
                ring.close();
            }
        };
    }

    @Override
    public DeviceBuffer allocate(long bytes) {
        return delegate.allocate(bytes);
    }

    @Override
    public void write(DeviceBuffer dst, long dstOffset, ByteBuffer src) {
        delegate.write(dst, dstOffset, src);
    }

    @Override
    public void read(DeviceBuffer src, long srcOffset, ByteBuffer dst) {
        delegate.read(src, srcOffset, dst);
    }

    @Override
    public void close() {
        delegate.close();
    }
}
