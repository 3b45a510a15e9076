package dev.routingreplay.cuda;

import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import jcuda.NativePointerObject;
import jcuda.Pointer;
import jcuda.driver.CUstream;

/**
 * Raw CUDA handles to and from JCuda objects, for memory and streams that another library owns (a framework's
 * tensor {@code data_ptr()}, its current stream's {@code cuda_stream}). JCuda keeps these constructors non-public,
 * so they are reached by reflection (JCuda is on the class path, not a named module).
 */
final class CudaHandles {
    private CudaHandles() {
    }

    static CUstream stream(long handle) {
        if (handle == 0) {
            throw new IllegalArgumentException("stream handle 0 is the legacy default stream; pass the engine's own stream");
        }
        try {
            Constructor<CUstream> c = CUstream.class.getDeclaredConstructor(long.class);
            c.setAccessible(true);
            return c.newInstance(handle);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("this JCuda version cannot wrap a raw stream handle", e);
        }
    }

    /** The raw address a JCuda object stands for (for a pointer: its base plus its byte offset). */
    static long address(NativePointerObject object) {
        try {
            Method m = NativePointerObject.class.getDeclaredMethod("getNativePointer");
            m.setAccessible(true);
            long base = (long) m.invoke(object);
            if (object instanceof Pointer) {
                Method offset = Pointer.class.getDeclaredMethod("getByteOffset");
                offset.setAccessible(true);
                base += (long) offset.invoke(object);
            }
            return base;
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("this JCuda version hides native pointers", e);
        }
    }
}
