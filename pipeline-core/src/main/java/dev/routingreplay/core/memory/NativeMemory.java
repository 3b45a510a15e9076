package dev.routingreplay.core.memory;

import java.lang.reflect.Field;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Off-heap memory that is freed when the owner says so (not when the garbage collector gets to it), with a count
 * of live bytes so tests can prove that every buffer was released. Using a buffer after {@link #free} is a bug
 * and may crash the JVM, just as touching freed device memory would.
 */
public final class NativeMemory {
    private static final sun.misc.Unsafe UNSAFE = loadUnsafe();
    private final AtomicLong liveBytes = new AtomicLong();
    private final AtomicLong liveBuffers = new AtomicLong();

    /** Allocates {@code bytes} zeroed bytes in native order. */
    public ByteBuffer allocate(int bytes) {
        ByteBuffer b = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder());
        liveBytes.addAndGet(bytes);
        liveBuffers.incrementAndGet();
        return b;
    }

    /** Frees a buffer returned by {@link #allocate}; the caller guarantees nobody reads it any more. */
    public void free(ByteBuffer buffer) {
        liveBytes.addAndGet(-buffer.capacity());
        liveBuffers.decrementAndGet();
        UNSAFE.invokeCleaner(buffer);
    }

    /** Bytes allocated and not yet freed. */
    public long liveBytes() {
        return liveBytes.get();
    }

    /** Buffers allocated and not yet freed. */
    public long liveBuffers() {
        return liveBuffers.get();
    }

    private static sun.misc.Unsafe loadUnsafe() {
        try {
            Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            return (sun.misc.Unsafe) f.get(null);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }
}
