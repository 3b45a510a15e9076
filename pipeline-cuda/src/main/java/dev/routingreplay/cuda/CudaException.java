package dev.routingreplay.cuda;

import jcuda.driver.CUresult;

/** A CUDA driver call failed: the message names the call and the error code. */
public class CudaException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int code;

    /** {@code call} returned {@code code}. */
    public CudaException(String call, int code) {
        super(call + " failed: " + CUresult.stringFor(code) + " (" + code + ")");
        this.code = code;
    }

    /** A CUDA problem that is not a failed call, such as no driver or no device. */
    public CudaException(String message, Throwable cause) {
        super(message, cause);
        this.code = -1;
    }

    /** The CUresult code, or -1. */
    public int code() {
        return code;
    }
}
