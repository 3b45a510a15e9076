package dev.routingreplay.core.host;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.InterprocessEvent;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;

/** The host device as an {@code InterprocessDevice}: file regions another process maps, and no-op events. */
class HostExportedMemoryTest {
    @TempDir
    Path tmp;

    private static byte[] handle(Path file) {
        return file.toString().getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void mapsTheRangeAndSeesTheExportersLaterWrites() throws Exception {
        Path file = tmp.resolve("engine.buf");
        Files.write(file, new byte[4096]);
        HostDevice device = new HostDevice();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            MappedByteBuffer exporter = ch.map(FileChannel.MapMode.READ_WRITE, 0, 4096);
            exporter.order(ByteOrder.nativeOrder());
            HostDeviceBuffer opened = device.openExportedBuffer(handle(file), 1024, 512);
            assertEquals(512, opened.byteSize());
            assertTrue(opened.isExported());
            exporter.putLong(1024 + 8, 0x1122334455667788L);
            assertEquals(0x1122334455667788L, opened.memory().getLong(8), "the exporter's write shows through");
            assertTrue(opened.memory().isReadOnly());
            assertEquals(0, device.liveBytes(), "mapped bytes are not the device's allocations");
            opened.close();
            opened.close();
            assertThrows(IllegalStateException.class, opened::memory);
            assertEquals(0x1122334455667788L, exporter.getLong(1024 + 8), "closing frees nothing of the exporter's");
            assertTrue(Files.exists(file));
        }
    }

    @Test
    void aMissingOrShortFileOrBadRangeIsRefusedNamingPathAndRange() throws Exception {
        HostDevice device = new HostDevice();
        Path missing = tmp.resolve("missing.buf");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> device.openExportedBuffer(handle(missing), 0, 64));
        assertTrue(e.getMessage().contains(missing.toString()) && e.getMessage().contains("[0, 64)") && e.getMessage().contains("does not exist"),
                e.getMessage());
        Path small = tmp.resolve("small.buf");
        Files.write(small, new byte[100]);
        e = assertThrows(IllegalArgumentException.class, () -> device.openExportedBuffer(handle(small), 64, 64));
        assertTrue(e.getMessage().contains(small.toString()) && e.getMessage().contains("[64, 128)") && e.getMessage().contains("100 bytes"),
                e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> device.openExportedBuffer(handle(small), -1, 8));
        assertTrue(e.getMessage().contains("offset -1"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> device.openExportedBuffer(new byte[0], 0, 8));
        assertTrue(e.getMessage().contains("empty"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> device.openExportedBuffer(new byte[] {(byte) 0xC3, 0x28}, 0, 8));
        assertTrue(e.getMessage().contains("UTF-8"), e.getMessage());
    }

    @Test
    void eventsAreNoOpsWithAnEmptyHandleAndACudaHandleIsRefused() {
        HostDevice device = new HostDevice();
        try (InterprocessEvent created = device.createExportedEvent(); InterprocessEvent opened = device.openExportedEvent(new byte[0])) {
            assertArrayEquals(new byte[0], created.handle());
            created.recordOnCompute();
            opened.waitOnCompute();
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> device.openExportedEvent(new byte[64]));
        assertTrue(e.getMessage().contains("64 bytes"), e.getMessage());
    }

    @Test
    void theHostRingPacksFromAMappedBufferIntoTheSink() throws Exception {
        RoutingShape shape = new RoutingShape(2, 2, 16);
        int tokens = 3;
        Path file = tmp.resolve("step.buf");
        int routingBytes = tokens * shape.idsPerRow() * 4;
        Files.write(file, new byte[64 + routingBytes + tokens * 8]);
        HostDevice device = new HostDevice();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
                MemoryRoutingSink sink = new MemoryRoutingSink(shape, 16)) {
            MappedByteBuffer exporter = ch.map(FileChannel.MapMode.READ_WRITE, 0, ch.size());
            exporter.order(ByteOrder.nativeOrder());
            for (int i = 0; i < tokens * shape.idsPerRow(); i++) {
                exporter.putInt(64 + i * 4, i % 16);
            }
            for (int t = 0; t < tokens; t++) {
                exporter.putLong(64 + routingBytes + t * 8, 10 + t);
            }
            HostDeviceBuffer routing = device.openExportedBuffer(handle(file), 64, routingBytes);
            HostDeviceBuffer slots = device.openExportedBuffer(handle(file), 64 + routingBytes, tokens * 8L);
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(tokens).build();
            Flux.<EngineEvent>just(new RequestAdmitted("r"),
                            new CaptureStep(1, tokens, new RoutingBuffer(routing, ElementType.INT32, 2, 2),
                                    new SlotMappingBuffer(slots, ElementType.INT64)),
                            new RequestFinished("r", new int[] {10, 11, 12}))
                    .transform(pipeline).blockLast(Duration.ofSeconds(30));
            int[] ids = sink.finished("r").toIntArray();
            for (int i = 0; i < ids.length; i++) {
                assertEquals(i % 16, ids[i], "id " + i);
            }
            routing.close();
            slots.close();
            assertEquals(0, device.liveBytes(), "the ring is freed and mappings were never counted");
        }
    }
}
