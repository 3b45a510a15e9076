package dev.routingreplay.core.host;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.device.UploadStaging;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The host backend's upload staging: bytes land in the device's own buffer at once; exported mappings are refused. */
class HostUploadStagingTest {
    @TempDir
    Path tmp;

    @Test
    void copiesTheFirstBytesIntoAnAllocatedBufferAndFreesItsMemory() {
        HostDevice device = new HostDevice();
        long before = device.liveBytes();
        try (HostDeviceBuffer target = device.allocate(16); UploadStaging staging = device.openUploadStaging(16)) {
            staging.awaitCopied();
            staging.buffer().putLong(0, 0x1122334455667788L).putLong(8, -1L);
            staging.enqueueCopyTo(target, 8);
            assertEquals(0x1122334455667788L, target.memory().getLong(0));
            assertEquals(0L, target.memory().getLong(8), "only the bytes asked for");
            assertThrows(IllegalArgumentException.class, () -> staging.enqueueCopyTo(target, 17));
        }
        assertEquals(before, device.liveBytes(), "staging and buffer freed");
    }

    @Test
    void anExportedReadOnlyMappingIsNotATarget() throws Exception {
        HostDevice device = new HostDevice();
        Path file = Files.write(tmp.resolve("engine.buf"), new byte[64]);
        try (HostDeviceBuffer exported = device.openExportedBuffer(file.toString().getBytes(StandardCharsets.UTF_8), 0, 64);
                UploadStaging staging = device.openUploadStaging(8)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> staging.enqueueCopyTo(exported, 8));
            assertTrue(e.getMessage().contains("exported"), e.getMessage());
        }
    }
}
