package dev.routingreplay.cuda;

import java.lang.reflect.Field;
import java.util.Arrays;
import jcuda.driver.CUipcEventHandle;
import jcuda.driver.CUipcMemHandle;

/**
 * The 64-byte CUDA IPC handles as Java byte arrays and back. JCuda keeps their bytes in a private field that its
 * native code reads and writes, so they are reached by reflection (JCuda is on the class path, not a named module).
 */
final class CudaIpc {
    /** Bytes of a {@code cudaIpcMemHandle_t} and of a {@code cudaIpcEventHandle_t}. */
    static final int HANDLE_BYTES = 64;

    private static final Field MEM_BYTES = field(CUipcMemHandle.class);
    private static final Field EVENT_BYTES = field(CUipcEventHandle.class);

    private CudaIpc() {
    }

    static CUipcMemHandle memHandle(byte[] handle) {
        CUipcMemHandle h = new CUipcMemHandle();
        set(MEM_BYTES, h, checked(handle, "memory"));
        return h;
    }

    static CUipcEventHandle eventHandle(byte[] handle) {
        CUipcEventHandle h = new CUipcEventHandle();
        set(EVENT_BYTES, h, checked(handle, "event"));
        return h;
    }

    static byte[] bytes(CUipcEventHandle handle) {
        return get(EVENT_BYTES, handle).clone();
    }

    static byte[] bytes(CUipcMemHandle handle) {
        return get(MEM_BYTES, handle).clone();
    }

    private static byte[] checked(byte[] handle, String what) {
        if (handle == null || handle.length != HANDLE_BYTES) {
            throw new IllegalArgumentException("a CUDA IPC " + what + " handle has " + HANDLE_BYTES + " bytes, got "
                    + (handle == null ? "none" : handle.length));
        }
        return Arrays.copyOf(handle, HANDLE_BYTES);
    }

    private static Field field(Class<?> type) {
        try {
            Field f = type.getDeclaredField("reserved");
            f.setAccessible(true);
            return f;
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("this JCuda version hides the bytes of " + type.getSimpleName(), e);
        }
    }

    private static void set(Field field, Object handle, byte[] value) {
        try {
            field.set(handle, value);
        } catch (IllegalAccessException e) {
            throw new IllegalStateException("cannot set the bytes of a CUDA IPC handle", e);
        }
    }

    private static byte[] get(Field field, Object handle) {
        try {
            return (byte[]) field.get(handle);
        } catch (IllegalAccessException e) {
            throw new IllegalStateException("cannot read the bytes of a CUDA IPC handle", e);
        }
    }
}
