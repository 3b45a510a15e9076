package dev.routingreplay.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.host.HostDeviceBuffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The CUDA pack equals the host backend's byte for byte (status counts, slots, rows) for every model preset, int32
 * and int64 ids and slots, token counts 0, 1, random and the ring capacity, with staging and pinned memory poisoned
 * first so an unwritten byte is caught, and with planted invalid ids and slots. Needs a CUDA device; skipped without.
 */
@ExtendWith(GpuTestDevice.class)
class GpuPackTest {
    @ParameterizedTest(name = "{0}")
    @EnumSource(ModelPreset.class)
    void packEqualsTheHostBackend(ModelPreset preset, CudaDevice gpu) throws Exception {
        assertEquals(PackSite.DEVICE, gpu.packSite());
        packEqualsTheHostBackendOn(preset, gpu);
    }

    /** {@link PackSite#HOST}: the raw ids and slots cross by the copy engine and the host backend's pack runs on them. */
    @ParameterizedTest(name = "{0}")
    @EnumSource(ModelPreset.class)
    void hostSitePackEqualsTheHostBackend(ModelPreset preset, CudaDevice gpu) throws Exception {
        try (CudaDevice hostSite = CudaDevice.open(0, gpu.completion(), PackSite.HOST)) {
            packEqualsTheHostBackendOn(preset, hostSite);
        }
    }

    private static void packEqualsTheHostBackendOn(ModelPreset preset, CudaDevice gpu) throws Exception {
        HostDevice host = new HostDevice();
        Random rng = new Random(42 + preset.ordinal());
        int maxTokens = 4096;
        int slotCapacity = 1 << 20;
        RoutingShape shape = preset.shape();
        RingSpec spec = new RingSpec(shape, 1, maxTokens, slotCapacity);
        List<String> problems = new ArrayList<>();
        int checked = 0;
        StagingRing gpuRing = gpu.openRing(spec);
        StagingRing hostRing = host.openRing(spec);
        CudaBuffer gpuIds = gpu.allocate((long) maxTokens * shape.idsPerRow() * 8);
        CudaBuffer gpuSlots = gpu.allocate(maxTokens * 8L);
        HostDeviceBuffer hostIds = host.allocate((long) maxTokens * shape.idsPerRow() * 8);
        HostDeviceBuffer hostSlots = host.allocate(maxTokens * 8L);
        try {
            for (ElementType type : ElementType.values()) {
                for (int tokens : new int[] {0, 1, 1 + rng.nextInt(maxTokens - 1), maxTokens}) {
                    for (boolean plantInvalid : new boolean[] {false, true}) {
                        ByteBuffer ids = ByteBuffer.allocateDirect(tokens * shape.idsPerRow() * type.bytes()).order(ByteOrder.nativeOrder());
                        ByteBuffer slots = ByteBuffer.allocateDirect(tokens * type.bytes()).order(ByteOrder.nativeOrder());
                        fill(rng, shape, type, tokens, slotCapacity, plantInvalid, ids, slots);
                        gpu.write(gpuIds, 0, ids.duplicate());
                        gpu.write(gpuSlots, 0, slots.duplicate());
                        hostIds.memory().put(0, ids, 0, ids.capacity());
                        hostSlots.memory().put(0, slots, 0, slots.capacity());
                        poison(gpuRing);
                        CaptureStep gpuStep = new CaptureStep(tokens, tokens, new RoutingBuffer(gpuIds, type, shape.moeLayers(), shape.topK()),
                                new SlotMappingBuffer(gpuSlots, type));
                        CaptureStep hostStep = new CaptureStep(tokens, tokens, new RoutingBuffer(hostIds, type, shape.moeLayers(), shape.topK()),
                                new SlotMappingBuffer(hostSlots, type));
                        CompletableFuture<Throwable> gpuDone = new CompletableFuture<>();
                        CompletableFuture<Throwable> hostDone = new CompletableFuture<>();
                        gpuRing.enqueueCapture(0, gpuStep, (i, e) -> gpuDone.complete(e));
                        hostRing.enqueueCapture(0, hostStep, (i, e) -> hostDone.complete(e));
                        Throwable ge = gpuDone.get(30, TimeUnit.SECONDS);
                        Throwable he = hostDone.get(30, TimeUnit.SECONDS);
                        String what = type + " tokens=" + tokens + (plantInvalid ? " with invalid entries" : "");
                        String problem = ge != null || he != null ? "capture failed: gpu " + ge + ", host " + he
                                : PackComparison.difference(gpuRing.hostSlot(0), hostRing.hostSlot(0), spec, tokens, ids, type);
                        if (problem != null) {
                            problems.add(what + ": " + problem);
                        }
                        checked++;
                    }
                }
            }
        } finally {
            gpuRing.close();
            hostRing.close();
            gpuIds.close();
            gpuSlots.close();
            hostIds.close();
            hostSlots.close();
        }
        assertEquals(List.of(), problems, preset.cliName() + ": packs that differ from the host backend's, of " + checked);
    }

    /** Poisons ring slot 0's memory, so a byte the capture does not write is caught. */
    private static void poison(StagingRing ring) {
        if (ring instanceof CudaStagingRing r) {
            r.poison(0, (byte) 0xA5);
        } else {
            ((CudaHostPackRing) ring).poison(0, (byte) 0xA5);
        }
    }

    private static void fill(Random rng, RoutingShape shape, ElementType type, int tokens, int slotCapacity, boolean plantInvalid,
            ByteBuffer ids, ByteBuffer slots) {
        for (int t = 0; t < tokens; t++) {
            long slot = rng.nextInt(50) == 0 ? -1 : rng.nextInt(slotCapacity);
            if (plantInvalid && rng.nextInt(200) == 0) {
                slot = slotCapacity + rng.nextInt(5);
            }
            put(slots, type, t, slot);
            for (int j = 0; j < shape.idsPerRow(); j++) {
                long id = rng.nextInt(shape.numExperts());
                if (plantInvalid && rng.nextInt(5000) == 0) {
                    id = rng.nextBoolean() ? -1 - rng.nextInt(3) : shape.numExperts() + rng.nextInt(3);
                }
                put(ids, type, t * shape.idsPerRow() + j, id);
            }
        }
    }

    private static void put(ByteBuffer b, ElementType type, int index, long value) {
        if (type == ElementType.INT32) {
            b.putInt(index * 4, (int) value);
        } else {
            b.putLong(index * 8, value);
        }
    }

    /** Compares a GPU ring slot with the host backend's after the same capture. */
    static final class PackComparison {
        private PackComparison() {
        }

        /** Null when both slots hold the same pack status, slots and rows; else what differs first. */
        static String difference(ByteBuffer gpu, ByteBuffer host, RingSpec spec, int tokens, ByteBuffer ids, ElementType type) {
            RingSlotLayout layout = spec.layout();
            if (gpu.getInt(RingSlotLayout.INVALID_ID_COUNT) != host.getInt(RingSlotLayout.INVALID_ID_COUNT)
                    || gpu.getInt(RingSlotLayout.INVALID_SLOT_COUNT) != host.getInt(RingSlotLayout.INVALID_SLOT_COUNT)) {
                return "status counts differ: gpu " + gpu.getInt(RingSlotLayout.INVALID_ID_COUNT) + "/" + gpu.getInt(RingSlotLayout.INVALID_SLOT_COUNT)
                        + " host " + host.getInt(RingSlotLayout.INVALID_ID_COUNT) + "/" + host.getInt(RingSlotLayout.INVALID_SLOT_COUNT);
            }
            if (gpu.getInt(RingSlotLayout.INVALID_ID_COUNT) > 0) {
                int t = gpu.getInt(RingSlotLayout.INVALID_ID_TOKEN);
                int j = gpu.getInt(RingSlotLayout.INVALID_ID_INDEX);
                int index = t * spec.shape().idsPerRow() + j;
                long value = type == ElementType.INT32 ? ids.getInt(index * 4) : ids.getLong(index * 8);
                if (value != gpu.getLong(RingSlotLayout.INVALID_ID_VALUE) || value >= 0 && value < spec.shape().numExperts()) {
                    return "recorded invalid id is not an invalid entry: token " + t + " index " + j;
                }
            }
            int headerEnd = layout.headerBytes(tokens);
            for (int i = RingSlotLayout.SLOTS_OFFSET; i < headerEnd; i++) {
                if (gpu.get(i) != host.get(i)) {
                    return "slot bytes differ at offset " + i;
                }
            }
            int rowsEnd = layout.rowsOffset() + layout.rowBytesFor(tokens);
            for (int i = layout.rowsOffset(); i < rowsEnd; i++) {
                if (gpu.get(i) != host.get(i)) {
                    return "row bytes differ at offset " + i + " (token " + (i - layout.rowsOffset()) / layout.rowBytes() + "): gpu "
                            + (gpu.get(i) & 0xFF) + " host " + (host.get(i) & 0xFF);
                }
            }
            return null;
        }
    }
}
