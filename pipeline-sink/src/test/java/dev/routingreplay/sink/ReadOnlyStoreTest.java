package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import net.openhft.chronicle.core.values.LongValue;
import net.openhft.chronicle.queue.impl.single.TableStoreWriteLock;
import net.openhft.chronicle.queue.impl.table.Metadata;
import net.openhft.chronicle.queue.impl.table.SingleTableBuilder;
import net.openhft.chronicle.queue.impl.TableStore;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;

/**
 * Readers are read-only (issue 8 item 12, issue 13 items 3 and 4): a store on a read-only mount is read in full,
 * reading changes no file, a reader in another PID namespace never unlocks a live writer's lock, and after a
 * {@code kill -9} of the writer only the next writer takes its lock over. The mounts and namespaces need
 * {@code unshare}; where the machine does not permit it the test is skipped with the reason printed.
 */
class ReadOnlyStoreTest {
    private static final int REQUESTS = 40;

    @TempDir
    Path tmp;

    private static void writeStore(Path dir) {
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, CrashWorkload.SHAPE, 8);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, CrashWorkload.SHAPE, CrashWorkload.SLOTS))) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(4).maxTokensPerStep(8).build();
            Flux.range(0, REQUESTS).concatMapIterable(CrashWorkload::ops).map(op -> CrashWorkload.event(op, engine)).transform(pipeline)
                    .blockLast(Duration.ofSeconds(60));
        }
    }

    /** Every file under {@code dir}: size, modification time (ns) and SHA-256 of its bytes. */
    private static Map<String, String> snapshot(Path dir) throws IOException {
        Map<String, String> files = new TreeMap<>();
        try (Stream<Path> all = Files.walk(dir)) {
            for (Path f : (Iterable<Path>) all::iterator) {
                BasicFileAttributes a = Files.readAttributes(f, BasicFileAttributes.class);
                String what = a.isDirectory() ? "dir" : a.size() + " bytes, sha256 " + sha256(f);
                files.put(dir.relativize(f).toString(), what + ", mtime " + a.lastModifiedTime().toInstant());
            }
        }
        return files;
    }

    private static String sha256(Path f) throws IOException {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f)));
        } catch (NoSuchAlgorithmException e) {
            throw new AssertionError(e);
        }
    }

    private record Run(int status, String output) {
    }

    private static Run run(List<String> cmd, int seconds) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[][] out = new byte[1][];
        Thread drain = new Thread(() -> {
            try {
                out[0] = p.getInputStream().readAllBytes();
            } catch (IOException e) {
                out[0] = e.toString().getBytes(StandardCharsets.UTF_8);
            }
        });
        drain.start();
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError(String.join(" ", cmd) + " did not finish in " + seconds + " s");
        }
        drain.join();
        return new Run(p.exitValue(), new String(out[0], StandardCharsets.UTF_8));
    }

    /** Skips the test (printing why) unless {@code probe} runs and exits 0 on this machine. */
    private static void assumeRuns(List<String> probe) throws InterruptedException {
        String why;
        try {
            Run r = run(probe, 20);
            if (r.status() == 0) {
                return;
            }
            why = "exit " + r.status() + ": " + r.output().strip();
        } catch (IOException e) {
            why = e.toString();
        }
        String reason = "skipped: this machine does not permit `" + String.join(" ", probe) + "` (" + why + ")";
        System.out.println(reason);
        Assumptions.abort(reason);
    }

    private static List<String> withReadOnlyBind(Path source, Path mountPoint, List<String> cmd) {
        List<String> all = new ArrayList<>(List.of("unshare", "-rm", "sh", "-c", "mount --bind -o ro \"$0\" \"$1\" && shift && exec \"$@\"",
                source.toString(), mountPoint.toString()));
        all.addAll(cmd);
        return all;
    }

    private static List<String> reader(Path dir, int opens) {
        List<String> cmd = CrashWriter.javaCommand(StoreReader.class);
        cmd.add(dir.toString());
        cmd.add(Integer.toString(opens));
        return cmd;
    }

    private static long lines(String output, String prefix) {
        return output.lines().filter(l -> l.startsWith(prefix)).count();
    }

    private static List<String> ids(Path dir) {
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            return replay.requests().map(RequestRouting::requestId).collectList().block(Duration.ofSeconds(30));
        }
    }

    @Test
    void aStoreOnAReadOnlyMountIsReadInFullAndReadingChangesNoFile() throws Exception {
        Path store = tmp.resolve("store");
        Path mount = Files.createDirectories(tmp.resolve("ro"));
        assumeRuns(withReadOnlyBind(tmp, mount, List.of("true")));
        writeStore(store);
        int expected = ids(store).size();
        assertTrue(expected >= REQUESTS - 1, "requests stored: " + expected);
        Map<String, String> before = snapshot(store);

        Run r = run(withReadOnlyBind(store, mount, reader(mount, 1)), 60);
        assertEquals(0, r.status(), r.output());
        assertTrue(r.output().contains("WRITE refused: java.nio.file.FileSystemException: " + mount.resolve("write-probe")
                + ": Read-only file system"), "the mount is read-only: " + r.output());
        assertEquals(List.of("READ " + expected), r.output().lines().filter(l -> l.startsWith("READ")).toList(), r.output());
        assertTrue(r.output().contains("NAMED refused: " + mount + ": the store is read-only, and named reader 'trainer' must write its "
                + "position into it"), r.output());
        assertFalse(r.output().contains("Failback"), "Chronicle read its metadata: " + r.output());
        assertEquals(before, snapshot(store), "reading through a read-only mount changed no file");

        // the same reads on the writable folder change nothing either (no metadata, lock or size written)
        Thread.sleep(20); // a write now would get a later mtime
        r = run(reader(store, 2), 60);
        assertEquals(0, r.status(), r.output());
        assertEquals(2, lines(r.output(), "READ " + expected), r.output());
        assertTrue(r.output().contains("NAMED read " + expected), r.output());
        Map<String, String> after = snapshot(store);
        assertTrue(after.keySet().remove("readers/trainer.position"), "the named reader kept its position: " + after.keySet().toString());
        assertTrue(after.keySet().remove("readers"), after.keySet().toString());
        // the store folder itself got the reader's write probe and readers/ (the named reader's position)
        after.remove("");
        before.remove("");
        assertEquals(before, after, "reading changed no store file");
    }

    /** Who holds the write lock of the queue at {@code queue}, read without writing: a PID, or UNLOCKED. */
    private static long lockedBy(Path queue) {
        try (TableStore<Metadata.NoMeta> meta = SingleTableBuilder.binary(queue.resolve("metadata.cq4t"), Metadata.NoMeta.INSTANCE)
                .readOnly(true).build();
                LongValue lock = meta.acquireValueFor("chronicle.write.lock")) {
            return lock.getVolatileValue();
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void aReaderInAnotherPidNamespaceNeverUnlocksALiveWriter() throws Exception {
        List<String> pidNamespace = List.of("unshare", "-Urp", "--fork", "--mount-proc");
        List<String> probe = new ArrayList<>(pidNamespace);
        probe.add("true");
        assumeRuns(probe);
        Path dir = tmp.resolve("store");
        Path writerErr = tmp.resolve("writer.err");
        // every write holds the queue's write lock for 3 ms, so a reader's open nearly always meets it held
        Process writer = new ProcessBuilder(CrashWriter.command(dir, 0, -1, 3)).redirectError(writerErr.toFile()).start();
        try (BufferedReader out = new BufferedReader(new InputStreamReader(writer.getInputStream(), StandardCharsets.UTF_8))) {
            String line = out.readLine();
            assertTrue(line != null && line.startsWith("RECOVERED"), "writer said: " + line);
            int finishes = 0;
            while (finishes < 5 && (line = out.readLine()) != null) {
                finishes += line.startsWith("ACK FINISH") ? 1 : 0;
            }
            List<String> cmd = new ArrayList<>(pidNamespace);
            cmd.addAll(reader(dir, 30));
            Run r = run(cmd, 90);
            assertEquals(0, r.status(), r.output());
            assertEquals(30, lines(r.output(), "READ "), r.output());
            assertTrue(r.output().contains("NAMED read "), r.output());
            assertFalse(r.output().contains("orced unlock"), "the reader broke the writer's lock: " + r.output());
            assertTrue(writer.isAlive(), "the writer kept running");
            int later = 0;
            while (later < 5 && (line = out.readLine()) != null) {
                later += line.startsWith("ACK FINISH") ? 1 : 0;
            }
            assertEquals(5, later, "the writer kept writing after the reader");
        } finally {
            writer.destroyForcibly();
            writer.waitFor(10, TimeUnit.SECONDS);
        }
        String err = Files.readString(writerErr);
        assertFalse(err.contains("already unlocked") || err.contains("orced unlock"), "writer's log: " + err);
        assertFalse(ids(dir).isEmpty());
    }

    @Test
    void afterAKill9OfTheWriterReadersLeaveItsLockAndOnlyTheNextWriterTakesItOver() throws Exception {
        Path dir = tmp.resolve("store");
        Path requests = dir.resolve("requests");
        // the writer stops inside its 21st request record write, holding the request queue's lock
        Process writer = new ProcessBuilder(CrashWriter.command(dir, 0, -1, 0, 20)).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        try (BufferedReader out = new BufferedReader(new InputStreamReader(writer.getInputStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = out.readLine()) != null && !line.equals("HOLDING")) {
                // acknowledgements
            }
            assertEquals("HOLDING", line);
            writer.destroyForcibly(); // SIGKILL inside the write
            assertTrue(writer.waitFor(10, TimeUnit.SECONDS));
        } finally {
            writer.destroyForcibly();
        }
        long dead = lockedBy(requests);
        assertEquals(writer.pid(), (int) dead, "the killed writer's PID holds the lock");

        List<String> ids = ids(dir);
        assertEquals(20, ids.size(), "every acknowledged record is readable while the dead writer's lock is held: " + ids);
        Run r = run(reader(dir, 3), 60);
        assertEquals(0, r.status(), r.output());
        assertEquals(3, lines(r.output(), "READ 20"), r.output());
        assertEquals(dead, lockedBy(requests), "readers (in this process and another) left the lock as it was");

        long resume = CrashWorkload.request(ids.get(ids.size() - 1));
        Process next = new ProcessBuilder(CrashWriter.command(dir, resume, resume + 5)).redirectErrorStream(true).start();
        String output = new String(next.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(next.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, next.exitValue(), output);
        assertTrue(output.contains("DONE"), output);
        assertNotEquals(dead, lockedBy(requests), "the next writer took the dead writer's lock over");
        assertEquals(TableStoreWriteLock.UNLOCKED, lockedBy(requests));
        assertTrue(ids(dir).contains(CrashWorkload.requestId(resume + 4)));
    }

    @Test
    void theManifestNamesTheRollCycleSoAReaderNeedsNoChronicleMetadata() throws IOException {
        Path dir = tmp.resolve("store");
        writeStore(dir);
        List<String> all = ids(dir);
        assertTrue(Files.readString(dir.resolve(StoreManifest.FILE)).contains("rollCycle=FAST_HOURLY"));
        // a read-only opener that cannot use Chronicle's metadata file (here emptied) falls back to the roll cycle it
        // was given: the manifest's (else Chronicle's default, and the queue's file names do not parse)
        Path metadata = dir.resolve("requests").resolve("metadata.cq4t");
        Files.write(metadata, new byte[0]);
        assertEquals(all, ids(dir));
        assertEquals(0, Files.size(metadata), "the reader changed nothing");
    }

    @Test
    void aStoreWrittenBeforeTheManifestNamedTheRollCycleIsReadAndItsNextWriterRecordsIt() throws IOException {
        Path dir = tmp.resolve("store");
        writeStore(dir);
        List<String> all = ids(dir);
        Path manifest = dir.resolve(StoreManifest.FILE);
        Files.write(manifest, Files.readAllLines(manifest).stream().filter(l -> !l.startsWith("rollCycle")).toList());
        assertEquals(null, StoreManifest.read(dir).rollCycle());
        assertEquals(all, ids(dir), "Chronicle's metadata says the roll cycle");
        // a writer configured with another cycle keeps the store's own and records it
        StoreConfig daily = StoreConfig.of(dir, CrashWorkload.SHAPE, CrashWorkload.SLOTS).withRollCycle(net.openhft.chronicle.queue.RollCycles.FAST_DAILY);
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(daily)) {
            assertEquals(all.size(), sink.recovery().requestsThisRound());
        }
        assertEquals(net.openhft.chronicle.queue.RollCycles.FAST_HOURLY, StoreManifest.read(dir).rollCycle());
    }

    @Test
    void anUnknownRollCycleInTheManifestIsNamed() throws IOException {
        Path dir = tmp.resolve("store");
        writeStore(dir);
        Path manifest = dir.resolve(StoreManifest.FILE);
        Files.writeString(manifest, Files.readString(manifest).replace("rollCycle=FAST_HOURLY", "rollCycle=FORTNIGHTLY"));
        StoreException e = org.junit.jupiter.api.Assertions.assertThrows(StoreException.class, () -> RoutingReplay.open(dir));
        assertTrue(e.getMessage().startsWith(manifest + ": unknown roll cycle rollCycle=FORTNIGHTLY"), e.getMessage());
    }
}
