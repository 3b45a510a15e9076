package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.concurrent.ConcurrentHashMap;
import net.openhft.chronicle.queue.ExcerptAppender;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * Not a test: measures how long the replay server's {@link RequestIndex} takes to build over 200,000 records, its id
 * table's size, and lookups by id and ordinal (docs/trainer.md). Runs only when asked:
 * {@code mvn -B -q -o verify -pl pipeline-sink -am -Dtest=RequestIndexProbeTest -Dr3.probe=true -Dsurefire.failIfNoSpecifiedTests=false}.
 */
@EnabledIfSystemProperty(named = "r3.probe", matches = "true")
class RequestIndexProbeTest {
    @TempDir
    Path dir;

    @Test
    void buildAndLookups() {
        RoutingShape shape = new RoutingShape(36, 4, 128);
        StoreConfig config = TrainerStores.empty(dir, shape);
        int n = 200_000;
        byte[] rows = new byte[shape.rowBytes()];
        ByteBuffer head = ByteBuffer.allocate(256).order(ByteOrder.LITTLE_ENDIAN);
        try (SingleChronicleQueue q = StoreQueues.writable(config.requestsDir(), new ConcurrentHashMap<>(), "request",
                config.requestBlockSize(), config.rollCycle()); ExcerptAppender appender = q.createAppender()) {
            for (int i = 0; i < n; i++) {
                head.clear();
                RequestRecords.putHeader(head, "request-" + i + "-0123456789abcdef", 0, i, shape, 1, 0, null, null, Crc32c.of(rows, 0, rows.length));
                try (DocumentContext dc = appender.writingDocument()) {
                    dc.wire().bytes().write(head.array(), 0, head.position());
                    dc.wire().bytes().write(rows);
                    dc.wire().bytes().writeInt(0);
                }
            }
        }
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            for (int round = 0; round < 3; round++) {
                long t0 = System.nanoTime();
                try (RequestIndex index = new RequestIndex(replay.queue(), replay.queuePath())) {
                    long ms = (System.nanoTime() - t0) / 1_000_000;
                    long t1 = System.nanoTime();
                    int found = 0;
                    for (int i = 0; i < 100_000; i++) {
                        found += index.byId("request-" + (i * 2) + "-0123456789abcdef").length > 0 ? 1 : 0;
                        index.byOrdinal(i);
                    }
                    long lookupNs = (System.nanoTime() - t1) / 100_000;
                    System.out.println("PROBE records=" + n + " build_ms=" + ms + " runs=" + index.runs() + " idTableBytes=" + index.idTableBytes()
                            + " lookup_ns=" + lookupNs + " found=" + found);
                }
            }
        }
    }
}
