package dev.routingreplay.cuda;

import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUipcMem_flags;
import jcuda.driver.JCudaDriver;

/**
 * Allocations another process exported with {@code cudaIpcGetMemHandle}, opened in this device's context. A handle
 * can be opened only once per context, and an engine exports several buffers that are slices of one allocation, so
 * each handle is opened once and counted: the mapping is closed with {@code cuIpcCloseMemHandle} when the last
 * buffer over it closes. Not on the hot path (opened at an engine's hello, closed at its end); synchronized.
 */
final class CudaImportedMemory {
    private final CudaDevice device;
    private final Map<String, Mapping> open = new HashMap<>();

    CudaImportedMemory(CudaDevice device) {
        this.device = device;
    }

    /** A buffer over {@code [offset, offset + bytes)} of the allocation {@code handle} names; closing it releases the mapping. */
    synchronized CudaBuffer open(byte[] handle, long offset, long bytes) {
        if (offset < 0 || bytes <= 0) {
            throw new IllegalArgumentException("exported buffer range must have offset >= 0 and bytes > 0, was offset " + offset
                    + ", bytes " + bytes);
        }
        String key = HexFormat.of().formatHex(handle == null ? new byte[0] : handle);
        Mapping mapping = open.get(key);
        if (mapping == null) {
            mapping = map(handle, key);
            open.put(key, mapping);
        }
        if (offset > mapping.size || bytes > mapping.size - offset) {
            if (mapping.refs == 0) {
                unmap(key, mapping);
            }
            throw new IllegalArgumentException("exported range [" + offset + ", " + (offset + bytes) + ") lies outside the "
                    + mapping.size + "-byte allocation its handle names");
        }
        mapping.refs++;
        Mapping m = mapping;
        return new CudaBuffer(device, m.base.withByteOffset(offset), bytes, () -> release(key, m));
    }

    /** How many exported allocations are mapped now (for tests). */
    synchronized int mappedAllocations() {
        return open.size();
    }

    private Mapping map(byte[] handle, String key) {
        var h = CudaIpc.memHandle(handle);
        device.bind();
        CUdeviceptr base = new CUdeviceptr();
        Cuda.check(JCudaDriver.cuIpcOpenMemHandle(base, h, CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS), "cuIpcOpenMemHandle");
        CUdeviceptr rangeBase = new CUdeviceptr();
        long[] size = new long[1];
        int r = JCudaDriver.cuMemGetAddressRange(rangeBase, size, base);
        if (r != 0) {
            JCudaDriver.cuIpcCloseMemHandle(base);
            Cuda.check(r, "cuMemGetAddressRange(imported allocation)");
        }
        return new Mapping(base, size[0]);
    }

    private synchronized void release(String key, Mapping mapping) {
        if (--mapping.refs == 0) {
            unmap(key, mapping);
        }
    }

    private void unmap(String key, Mapping mapping) {
        open.remove(key);
        device.bind();
        Cuda.check(JCudaDriver.cuIpcCloseMemHandle(mapping.base), "cuIpcCloseMemHandle");
    }

    private static final class Mapping {
        final CUdeviceptr base;
        final long size;
        int refs;

        Mapping(CUdeviceptr base, long size) {
            this.base = base;
            this.size = size;
        }
    }
}
