package dev.routingreplay.cuda;

import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/** Checks driver results and tells whether CUDA is usable here, without throwing from a mere probe. */
public final class Cuda {
    private static volatile String unavailableReason;
    private static volatile boolean initialized;

    private Cuda() {
    }

    /** Throws {@link CudaException} naming {@code call} unless {@code result} is {@code CUDA_SUCCESS}. */
    public static void check(int result, String call) {
        if (result != CUresult.CUDA_SUCCESS) {
            throw new CudaException(call, result);
        }
    }

    /**
     * Initializes the driver once.
     *
     * @throws CudaException with one line saying what is missing and how to run on the host backend instead
     */
    public static synchronized void init() {
        if (initialized) {
            return;
        }
        String reason = probe();
        if (reason != null) {
            throw new CudaException(reason, null);
        }
        initialized = true;
    }

    /** Null when a CUDA driver and at least one device are present; else a one-line reason. */
    public static synchronized String unavailableReason() {
        if (initialized) {
            return null;
        }
        if (unavailableReason == null) {
            unavailableReason = probe();
            if (unavailableReason == null) {
                initialized = true;
            }
        }
        return unavailableReason;
    }

    private static String probe() {
        try {
            JCudaDriver.setExceptionsEnabled(false);
            int r = JCudaDriver.cuInit(0);
            if (r != CUresult.CUDA_SUCCESS) {
                return "no usable CUDA driver (cuInit: " + CUresult.stringFor(r) + "); run with --backend host";
            }
            int[] count = new int[1];
            r = JCudaDriver.cuDeviceGetCount(count);
            if (r != CUresult.CUDA_SUCCESS || count[0] == 0) {
                return "no CUDA device found (cuDeviceGetCount: " + (r == 0 ? "0 devices" : CUresult.stringFor(r)) + "); run with --backend host";
            }
            return null;
        } catch (UnsatisfiedLinkError | NoClassDefFoundError e) {
            return "no CUDA driver on this machine (" + firstLine(e.getMessage()) + "); run with --backend host";
        }
    }

    private static String firstLine(String s) {
        if (s == null) {
            return "libcuda.so.1 not loadable";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
