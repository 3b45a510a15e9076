package dev.routingreplay.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.ReaderPosition;
import dev.routingreplay.sink.ReplayServer;
import dev.routingreplay.sink.ReplayedRequest;
import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.StoredRecord;
import dev.routingreplay.sink.TestStores;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;
import reactor.core.publisher.BaseSubscriber;
import reactor.netty.http.client.HttpClient;

/**
 * The announcer and the cluster reader against a real broker (a child JVM), a real store and a real replay server.
 */
class ClusterReaderTest {
    private static final AtomicInteger TOPICS = new AtomicInteger();
    private static KafkaBroker broker;

    @TempDir
    Path dir;

    @BeforeAll
    static void startBroker(@TempDir Path brokerDir) throws Exception {
        broker = KafkaBroker.start(brokerDir);
    }

    @AfterAll
    static void stopBroker() {
        if (broker != null) {
            broker.close();
        }
    }

    private static String topic(int partitions) throws Exception {
        String t = "r3-test-" + TOPICS.incrementAndGet();
        broker.createTopic(t, partitions);
        return t;
    }

    private static String[] ids(String prefix, int from, int n) {
        return IntStream.range(from, from + n).mapToObj(i -> prefix + i).toArray(String[]::new);
    }

    private StoreConfig config(Path store) {
        return StoreConfig.of(store, TestStores.SHAPE, 256).withMinFreeBytes(0);
    }

    /** The store's records by request id: the oracle. */
    private static Map<String, RequestRouting> stored(Path store) {
        try (RoutingReplay replay = RoutingReplay.open(store)) {
            return replay.fromStart().collectList().block(Duration.ofSeconds(30)).stream()
                    .collect(Collectors.toMap(r -> r.routing().requestId(), ReplayedRequest::routing));
        }
    }

    private static List<Announcement> announcements(String topic, int atLeast) {
        Map<String, Object> props = Map.of(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap(),
                ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest", ConsumerConfig.GROUP_ID_CONFIG, "raw-" + topic + "-" + System.nanoTime(),
                ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName(),
                ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        List<Announcement> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
            c.subscribe(List.of(topic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    Announcement a = Announcement.parse(r.value());
                    assertEquals(a.requestId(), r.key(), "keyed by request id");
                    out.add(a);
                }
                if (out.size() >= atLeast) {
                    // a little longer, to see any extra
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                        out.add(Announcement.parse(r.value()));
                    }
                    break;
                }
            }
        }
        return out;
    }

    private static void assertSameRows(RequestRouting expected, RequestRouting actual) {
        assertEquals(expected.seqLen(), actual.seqLen(), expected.requestId());
        assertEquals(expected.shape(), actual.shape(), expected.requestId());
        assertEquals(expected.rows(), actual.rows(), expected.requestId() + ": the fetched rows are the stored ones");
    }

    private static String url(ReplayServer server) {
        return "http://127.0.0.1:" + server.port();
    }

    @Test
    void everyDurableRecordIsAnnouncedAndHandedDownstreamOnceWithItsRouting() throws Exception {
        Path store = dir.resolve("node");
        TestStores.write(config(store), ids("r", 0, 12));
        String topic = topic(3);
        try (ReplayServer server = ReplayServer.start(store, "127.0.0.1", 0);
                Announcer announcer = Announcer.start(Announcer.Config.of(store, url(server), broker.bootstrap(), topic))) {
            List<Announcement> raw = announcements(topic, 12);
            assertEquals(12, raw.size(), "one announcement per record: " + raw);
            Map<Long, StoredRecord> headers = new HashMap<>();
            try (RoutingReplay replay = RoutingReplay.open(store)) {
                replay.records(-1, false).toStream().forEach(r -> headers.put(r.ordinal(), r));
            }
            for (Announcement a : raw) {
                StoredRecord h = headers.get(a.ordinal());
                assertEquals(h.requestId(), a.requestId());
                assertEquals(h.index(), a.index());
                assertEquals(String.format("%08x", h.rowsCrc32c()), a.crc32c());
                assertEquals(h.rowsBytes(), a.bytes());
                assertEquals("uint16", a.dtype());
                assertEquals(url(server), a.node());
                assertTrue(Math.abs(a.timeMicros() / 1000 - System.currentTimeMillis()) < 60_000, "time is now-ish: " + a.timeMicros());
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (announcer.announced() < 12 && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertEquals(12, announcer.announced());
            assertEquals(headers.get(11L).index(), announcer.announcedUpTo(), "the position is the last record acknowledged");

            Map<String, RequestRouting> oracle = stored(store);
            List<ClusterRecord> got = ClusterReader.builder(broker.bootstrap(), "g-all", topic).build().read().take(12)
                    .collectList().block(Duration.ofSeconds(60));
            assertEquals(oracle.keySet(), got.stream().map(r -> r.routing().requestId()).collect(Collectors.toSet()));
            got.forEach(r -> assertSameRows(oracle.get(r.routing().requestId()), r.routing()));
            assertEquals(12, got.size());
        }
    }

    @Test
    void aRestartAnnouncesOnlyWhatWasNotKnownAnnouncedAndReadersDropTheDuplicates() throws Exception {
        Path store = dir.resolve("node");
        String topic = topic(2);
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config(store))) {
            TestStores.finish(sink, 0, ids("a", 0, 6));
            try (ReplayServer server = ReplayServer.start(store, "127.0.0.1", 0)) {
                Announcer.Config cfg = Announcer.Config.of(store, url(server), broker.bootstrap(), topic);
                try (Announcer first = Announcer.start(cfg)) {
                    TestStores.finish(sink, 6, ids("a", 6, 4));
                    awaitAnnounced(first, 10);
                }
                // a crash after the sends but before the position moved: the last 3 are not known to be announced
                long third;
                try (RoutingReplay replay = RoutingReplay.open(store)) {
                    third = replay.records(-1, false).skip(6).blockFirst(Duration.ofSeconds(10)).index();
                }
                try (ReaderPosition p = ReaderPosition.open(store, Announcer.readerName(topic))) {
                    p.set(third);
                }
                TestStores.finish(sink, 10, ids("a", 10, 2));
                try (Announcer second = Announcer.start(cfg)) {
                    awaitAnnounced(second, 5);
                    List<Announcement> raw = announcements(topic, 15);
                    assertEquals(15, raw.size(), "12 records, 3 of them announced twice (at least once): " + raw.size());
                    Map<String, RequestRouting> oracle = stored(store);
                    List<ClusterRecord> got = new CopyOnWriteArrayList<>();
                    Disposable reading = ClusterReader.builder(broker.bootstrap(), "g-dedup", topic).build().read().subscribe(got::add);
                    try {
                        awaitSize(got, 12);
                        Thread.sleep(1000);
                    } finally {
                        reading.dispose();
                    }
                    assertEquals(12, got.size(), "each record handed downstream once: "
                            + got.stream().map(r -> r.routing().requestId()).sorted().collect(Collectors.toList()));
                    got.forEach(r -> assertSameRows(oracle.get(r.routing().requestId()), r.routing()));
                }
            }
        }
    }

    private static void awaitAnnounced(Announcer a, long n) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (a.announced() < n && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertEquals(n, a.announced(), "acknowledged announcements");
    }

    private static void awaitSize(List<?> list, int n) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (list.size() < n && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
    }

    @Test
    void noMoreFetchesInFlightThanRequestedAndCommitsOnlyWhatWasHandedDownstream() throws Exception {
        Path store = dir.resolve("node");
        TestStores.write(config(store), ids("b", 0, 20));
        String topic = topic(1);
        AtomicInteger inFlight = new AtomicInteger();
        AtomicInteger most = new AtomicInteger();
        HttpClient counting = HttpClient.create()
                .doOnRequest((req, conn) -> most.accumulateAndGet(inFlight.incrementAndGet(), Math::max))
                .doAfterResponseSuccess((res, conn) -> inFlight.decrementAndGet())
                .doOnError((req, e) -> inFlight.decrementAndGet(), (res, e) -> inFlight.decrementAndGet());
        try (ReplayServer server = ReplayServer.start(store, "127.0.0.1", 0);
                Announcer announcer = Announcer.start(Announcer.Config.of(store, url(server), broker.bootstrap(), topic))) {
            awaitAnnounced(announcer, 20);
            List<ClusterRecord> got = new CopyOnWriteArrayList<>();
            BaseSubscriber<ClusterRecord> slow = new BaseSubscriber<>() {
                @Override
                protected void hookOnSubscribe(org.reactivestreams.Subscription s) {
                    request(2);
                }

                @Override
                protected void hookOnNext(ClusterRecord r) {
                    got.add(r);
                }
            };
            ClusterReader.builder(broker.bootstrap(), "g-slow", topic).maxInFlight(16).httpClient(counting).build().read().subscribe(slow);
            awaitSize(got, 2);
            Thread.sleep(1500);
            assertEquals(2, got.size(), "nothing past the demand");
            assertTrue(most.get() <= 2, "at most the 2 requested fetches were in flight, saw " + most.get());
            slow.request(3);
            awaitSize(got, 5);
            Thread.sleep(500);
            assertEquals(5, got.size());
            assertTrue(most.get() <= 3, "at most the 3 requested fetches were in flight, saw " + most.get());
            slow.dispose();
            assertEquals(5, committed("g-slow", topic), "the group committed the 5 records handed downstream, no more");

            List<ClusterRecord> rest = ClusterReader.builder(broker.bootstrap(), "g-slow", topic).build().read().take(15)
                    .collectList().block(Duration.ofSeconds(60));
            List<String> all = new ArrayList<>();
            got.forEach(r -> all.add(r.routing().requestId()));
            rest.forEach(r -> all.add(r.routing().requestId()));
            assertEquals(List.of(ids("b", 0, 20)).stream().sorted().collect(Collectors.toList()),
                    all.stream().sorted().collect(Collectors.toList()), "the next member went on where the first stopped");
        }
    }

    private static long committed(String group, String topic) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        long last = -1;
        while (System.nanoTime() < deadline) {
            try (var admin = broker.admin()) {
                Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                        .get(10, TimeUnit.SECONDS);
                OffsetAndMetadata o = offsets.get(new TopicPartition(topic, 0));
                last = o == null ? -1 : o.offset();
            }
            Thread.sleep(100);
            if (last >= 0) {
                return last;
            }
        }
        return last;
    }

    @Test
    void aSliceFetchesOnlyTheAskedLayersAndRows() throws Exception {
        Path store = dir.resolve("node");
        TestStores.write(config(store), ids("c", 0, 4));
        String topic = topic(1);
        try (ReplayServer server = ReplayServer.start(store, "127.0.0.1", 0);
                Announcer announcer = Announcer.start(Announcer.Config.of(store, url(server), broker.bootstrap(), topic))) {
            Map<String, RequestRouting> oracle = stored(store);
            List<ClusterRecord> got = ClusterReader.builder(broker.bootstrap(), "g-slice", topic).slice(Slice.parse(0, "1:3")).build().read()
                    .take(4).collectList().block(Duration.ofSeconds(60));
            for (ClusterRecord r : got) {
                RequestRouting whole = oracle.get(r.routing().requestId());
                assertEquals(2, r.routing().shape().moeLayers());
                for (int p = 0; p < whole.seqLen(); p++) {
                    for (int l = 1; l < 3; l++) {
                        for (int k = 0; k < 2; k++) {
                            assertEquals(whole.id(p, l, k), r.routing().id(p, l - 1, k));
                        }
                    }
                }
            }
        }
    }

    @Test
    void aNodeBrieflyAwayIsRetriedAndOneThatStaysAwayFailsNamingNodeAndRequest() throws Exception {
        Path store = dir.resolve("node");
        TestStores.write(config(store), ids("d", 0, 3));
        String topic = topic(1);
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        String node = "http://127.0.0.1:" + port;
        try (Announcer announcer = Announcer.start(Announcer.Config.of(store, node, broker.bootstrap(), topic))) {
            awaitAnnounced(announcer, 3);
        }
        // away for good
        Throwable error = ClusterReader.builder(broker.bootstrap(), "g-away", topic).retry(3, Duration.ofMillis(50), Duration.ofMillis(200))
                .build().read().take(3).then().onErrorResume(e -> reactor.core.publisher.Mono.error(e))
                .materialize().block(Duration.ofSeconds(60)).getThrowable();
        assertNotNull(error, "the read fails");
        ClusterReadException e = assertInstanceOf(ClusterReadException.class, error);
        assertEquals(node, e.node());
        assertTrue(e.getMessage().contains(node) && e.getMessage().contains("request 'd"), e.getMessage());
        assertTrue(e.getMessage().contains("stayed away"), e.getMessage());
        assertTrue(committed("g-away", topic) <= 0, "nothing committed past the first record");

        // away for a second, then back on the same port
        List<ClusterRecord> got = new CopyOnWriteArrayList<>();
        List<Throwable> errors = new CopyOnWriteArrayList<>();
        Disposable reading = ClusterReader.builder(broker.bootstrap(), "g-back", topic).retry(20, Duration.ofMillis(100), Duration.ofMillis(500))
                .build().read().subscribe(got::add, errors::add);
        try {
            Thread.sleep(1000);
            assertTrue(got.isEmpty() && errors.isEmpty());
            try (ReplayServer server = ReplayServer.start(store, "127.0.0.1", port)) {
                awaitSize(got, 3);
                assertEquals(3, got.size(), "all fetched once the node is back: " + errors);
            }
        } finally {
            reading.dispose();
        }
        Map<String, RequestRouting> oracle = stored(store);
        got.forEach(r -> assertSameRows(oracle.get(r.routing().requestId()), r.routing()));
    }

    @Test
    void announcementsRoundTripThroughJson() {
        Announcement a = new Announcement(1, "id \"q\"\n/é", 2, "http://h:1", 7, 0x1c8acab00000003L, 5, 58, 8, 256, "uint16", 5 * 58 * 8 * 2,
                "0000abcd", 123);
        assertEquals(a, Announcement.parse(a.toJson()));
        assertEquals("p3", AnnouncementKey.parse("group:^(p\\d+)-").keyOf(new Announcement(1, "p3-L40-s1", 0, "http://h", 0, 0, 1, 1, 1,
                2, "uint8", 1, null, 0)));
        assertTrue(ByteBuffer.allocate(0).remaining() == 0);
    }
}
