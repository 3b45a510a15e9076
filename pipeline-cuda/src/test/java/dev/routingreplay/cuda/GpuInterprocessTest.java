package dev.routingreplay.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.device.InterprocessEvent;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * CUDA IPC against a real second process: a PyTorch process ({@code ipc_peer.py}) exports a slice of one of its
 * allocations and an interprocess event recorded behind a long sleep kernel; this device opens both, makes its
 * compute stream wait on the event, reads the slice (it must see the peer's values, not the zeros before them),
 * writes new values, records an event it created and hands the peer its handle; the peer waits on it and checks.
 * Needs a CUDA device and a python3 with PyTorch; skipped, with the reason, without.
 */
@ExtendWith(GpuTestDevice.class)
class GpuInterprocessTest {
    private static final int N = 4096;

    @Test
    void readsAndWritesAnotherProcessesMemoryInTheOrderItsEventsGive(CudaDevice gpu, @TempDir Path dir) throws Exception {
        Path script = dir.resolve("ipc_peer.py");
        try (InputStream in = GpuInterprocessTest.class.getResourceAsStream("ipc_peer.py")) {
            Files.copy(in, script);
        }
        Assumptions.assumeTrue(torchAvailable(), "python3 with PyTorch is needed for the peer process");
        Process peer = new ProcessBuilder("python3", script.toString()).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        try (BufferedReader out = new BufferedReader(new InputStreamReader(peer.getInputStream(), StandardCharsets.UTF_8));
                Writer to = new OutputStreamWriter(peer.getOutputStream(), StandardCharsets.UTF_8)) {
            String exported = out.readLine();
            assertTrue(exported != null, "the peer exited before exporting");
            byte[] torchHandle = HexFormat.of().parseHex(field(exported, "torch_handle"));
            // PyTorch frames the raw handle: a version byte, 'c' for a cudaMalloc block, then the 64 bytes
            assertEquals(66, torchHandle.length, "PyTorch's shareable handle length");
            assertEquals('c', torchHandle[1]);
            byte[] handle = Arrays.copyOfRange(torchHandle, 2, 66);
            long offset = Long.parseLong(field(exported, "storage_offset")) + Long.parseLong(field(exported, "slice_offset"));

            try (CudaBuffer slice = gpu.openExportedBuffer(handle, offset, N * 4L);
                    CudaBuffer again = gpu.openExportedBuffer(handle, offset, 8);
                    InterprocessEvent ready = gpu.openExportedEvent(HexFormat.of().parseHex(field(exported, "event")));
                    InterprocessEvent consumed = gpu.createExportedEvent()) {
                assertEquals(1, gpu.importedAllocations(), "slices of one allocation map it once");
                ready.waitOnCompute();
                int[] seen = readInts(gpu, slice);
                int[] expected = new int[N];
                Arrays.setAll(expected, i -> i * 7 + 3);
                assertArrayEquals(expected, seen, "the slice as the peer wrote it behind its event");

                ByteBuffer values = ByteBuffer.allocateDirect(N * 4).order(ByteOrder.nativeOrder());
                for (int i = 0; i < N; i++) {
                    values.putInt(-i);
                }
                values.flip();
                gpu.write(slice, 0, values);
                consumed.recordOnCompute();
                assertEquals(64, consumed.handle().length);
                to.write("{\"event\": \"" + HexFormat.of().formatHex(consumed.handle()) + "\"}\n");
                to.flush();
                String verdict = out.readLine();
                assertEquals("true", field(verdict, "matched"), "the peer read what this process wrote: " + verdict);

                IllegalArgumentException outside = assertThrows(IllegalArgumentException.class,
                        () -> gpu.openExportedBuffer(handle, 1L << 40, 8));
                assertTrue(outside.getMessage().contains("outside"), outside.getMessage());
                IllegalArgumentException shortHandle = assertThrows(IllegalArgumentException.class,
                        () -> gpu.openExportedBuffer(torchHandle, 0, 8));
                assertTrue(shortHandle.getMessage().contains("64 bytes"), shortHandle.getMessage());
            }
            assertEquals(0, gpu.importedAllocations(), "closing the last slice unmaps the allocation");
            assertTrue(peer.waitFor(60, TimeUnit.SECONDS), "the peer exits");
            assertEquals(0, peer.exitValue());
        } finally {
            peer.destroyForcibly();
        }
    }

    private static int[] readInts(CudaDevice gpu, CudaBuffer buffer) {
        ByteBuffer host = ByteBuffer.allocateDirect((int) buffer.byteSize()).order(ByteOrder.nativeOrder());
        gpu.read(buffer, 0, host);
        host.flip();
        int[] values = new int[(int) buffer.byteSize() / 4];
        host.asIntBuffer().get(values);
        return values;
    }

    private static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\": \"?([^\",}]*)\"?").matcher(json);
        assertTrue(m.find(), name + " in " + json);
        return m.group(1);
    }

    private static boolean torchAvailable() throws IOException, InterruptedException {
        try {
            Process p = new ProcessBuilder("python3", "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)")
                    .redirectErrorStream(true).start();
            p.getInputStream().transferTo(java.io.OutputStream.nullOutputStream());
            return p.waitFor(120, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        }
    }
}
