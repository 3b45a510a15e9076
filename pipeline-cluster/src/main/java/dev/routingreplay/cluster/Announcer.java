package dev.routingreplay.cluster;

import dev.routingreplay.sink.ReaderPosition;
import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.sink.StoredRecord;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.reactivestreams.Subscription;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;

/**
 * Announces a node's durable request records on a Kafka topic: it tails the store's request queue (decoupled from the
 * writer, in this process or another) and sends one {@link Announcement} per record, keyed by an
 * {@link AnnouncementKey}, with an idempotent producer ({@code acks=all}).
 *
 * <p>At least once: the announcer keeps "announced up to" as a named reader's position in the store
 * ({@code <store>/readers/announce-<topic>.position}, see {@link #readerName}), advanced only over records whose send Kafka
 * acknowledged, in store order, so a record is never marked announced before it is. On start it resumes after that
 * position: every record durable but not known to be announced (not acknowledged, or acknowledged after the last
 * position write, e.g. at a {@code kill -9}) is announced again. Consumers drop the duplicates by
 * {@link Announcement#dedupKey()}. Name the reader in the store's {@code retainForReaders} and retention keeps the records
 * until they are announced.
 *
 * <p>Threads: records are read on the store's replay readers ({@code r3-replay}, which may block: a full producer buffer
 * blocks there up to {@code max.block.ms}); acknowledgements arrive on the producer's I/O thread. At most
 * {@link Config#maxInFlight} sends are unacknowledged at once.
 */
public final class Announcer implements AutoCloseable {
    private final Config config;
    private final RoutingReplay replay;
    private final ReaderPosition position;
    private final KafkaProducer<String, String> producer;
    private final Sender sender = new Sender();
    private final AtomicLong announced = new AtomicLong();
    private final AtomicReference<Throwable> failure = new AtomicReference<>();
    private final Sinks.Empty<Void> stopped = Sinks.empty();
    /** Sends not yet folded into the position, in store order; guarded by itself. */
    private final ArrayDeque<Sent> unacknowledged = new ArrayDeque<>();

    /**
     * What to announce and where.
     *
     * @param store the node's store folder (must be writable: the position is kept there)
     * @param nodeUrl the base URL trainers fetch the payloads from: the node's replay server as they reach it
     * @param topic the Kafka topic
     * @param key the announcement key
     * @param producer Kafka producer properties ({@code bootstrap.servers} at least); the announcer sets the serializers,
     *     {@code enable.idempotence=true} and {@code acks=all}, which cannot be overridden
     * @param maxInFlight most unacknowledged sends, 1 to 65536
     */
    public record Config(Path store, String nodeUrl, String topic, AnnouncementKey key, Map<String, Object> producer, int maxInFlight) {
        /** Checks every field, naming the bad one. */
        public Config {
            Objects.requireNonNull(store, "store");
            Objects.requireNonNull(key, "key");
            if (nodeUrl == null || !(nodeUrl.startsWith("http://") || nodeUrl.startsWith("https://"))) {
                throw new IllegalArgumentException("nodeUrl must be an http(s) URL, was '" + nodeUrl + "'");
            }
            readerName(topic);
            producer = Map.copyOf(producer);
            if (!producer.containsKey(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG)) {
                throw new IllegalArgumentException("producer properties need " + ProducerConfig.BOOTSTRAP_SERVERS_CONFIG);
            }
            if (maxInFlight < 1 || maxInFlight > 65536) {
                throw new IllegalArgumentException("maxInFlight must be in 1..65536, was " + maxInFlight);
            }
        }

        /** Announce the store's records to {@code topic} on the brokers {@code bootstrap}, keyed by request id, 1024 in flight. */
        public static Config of(Path store, String nodeUrl, String bootstrap, String topic) {
            return new Config(store, nodeUrl, topic, AnnouncementKey.requestId(),
                    Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap), 1024);
        }

        /** A copy with another key. */
        public Config withKey(AnnouncementKey other) {
            return new Config(store, nodeUrl, topic, other, producer, maxInFlight);
        }
    }

    /** One send: the record's index, and whether Kafka acknowledged it. */
    private static final class Sent {
        final long index;
        boolean acknowledged;

        Sent(long index) {
            this.index = index;
        }
    }

    private Announcer(Config config) {
        this.config = config;
        this.replay = RoutingReplay.open(config.store());
        ReaderPosition opened = null;
        KafkaProducer<String, String> created = null;
        try {
            opened = ReaderPosition.open(config.store(), readerName(config.topic()));
            Map<String, Object> props = new HashMap<>(config.producer());
            props.putIfAbsent(ProducerConfig.CLIENT_ID_CONFIG, "r3-announcer");
            props.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, 2);
            props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
            props.put(ProducerConfig.ACKS_CONFIG, "all");
            props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            created = new KafkaProducer<>(props);
        } catch (RuntimeException e) {
            if (opened != null) {
                opened.close();
            }
            replay.close();
            throw e;
        }
        this.position = opened;
        this.producer = created;
    }

    /**
     * Starts announcing the store's records after the last one known to be announced, then the new ones as they are
     * written, until {@link #close()}.
     *
     * @throws dev.routingreplay.sink.StoreException naming the path when the store cannot be opened or its folder is not
     *     writable
     * @throws org.apache.kafka.common.KafkaException when the producer cannot be created (bad properties)
     */
    public static Announcer start(Config config) {
        Announcer a = new Announcer(config);
        a.replay.records(a.position.get(), true).subscribe(a.sender);
        return a;
    }

    /**
     * The name of the store reader that keeps an announcer's position for {@code topic}: {@code announce-<topic>}.
     *
     * @throws IllegalArgumentException when the topic is not 1 to 55 of {@code [A-Za-z0-9._-]}
     */
    public static String readerName(String topic) {
        if (topic == null || !topic.matches("[A-Za-z0-9._-]{1,55}")) {
            throw new IllegalArgumentException("topic must be 1 to 55 of [A-Za-z0-9._-], was '" + topic + "'");
        }
        return "announce-" + topic;
    }

    /** Announcements Kafka acknowledged since this announcer started. */
    public long announced() {
        return announced.get();
    }

    /** The Chronicle index of the last record known to be announced (acknowledged, in store order), or -1. */
    public long announcedUpTo() {
        return position.get();
    }

    /** Completes when the announcer stops: empty after {@link #close()}, with the error when a read or a send failed for good. */
    public Mono<Void> stopped() {
        return stopped.asMono();
    }

    /** The failure that stopped the announcer, or null. */
    public Throwable failure() {
        return failure.get();
    }

    private final class Sender extends BaseSubscriber<StoredRecord> {
        @Override
        protected void hookOnSubscribe(Subscription subscription) {
            request(config.maxInFlight());
        }

        @Override
        protected void hookOnNext(StoredRecord record) {
            Instant now = Instant.now();
            long micros = ChronoUnit.MICROS.between(Instant.EPOCH, now);
            Announcement a = Announcement.of(record, config.nodeUrl(), micros);
            Sent sent = new Sent(record.index());
            synchronized (unacknowledged) {
                unacknowledged.add(sent);
            }
            producer.send(new ProducerRecord<>(config.topic(), config.key().keyOf(a), a.toJson()), (metadata, error) -> {
                if (error != null) {
                    fail(new IllegalStateException("announcing " + a.describe() + " on topic " + config.topic() + " failed: " + error, error));
                    return;
                }
                acknowledged(sent);
                request(1);
            });
        }

        @Override
        protected void hookOnError(Throwable error) {
            fail(error);
        }
    }

    /** Producer I/O thread: folds the acknowledged sends at the head, in store order, into the position. */
    private void acknowledged(Sent sent) {
        long last = -1;
        int folded = 0;
        synchronized (unacknowledged) {
            sent.acknowledged = true;
            while (!unacknowledged.isEmpty() && unacknowledged.peek().acknowledged) {
                last = unacknowledged.poll().index;
                folded++;
            }
            if (folded > 0 && failure.get() == null) {
                position.set(last);
            }
        }
        announced.addAndGet(folded);
    }

    private void fail(Throwable error) {
        if (failure.compareAndSet(null, error)) {
            sender.dispose();
            stopped.tryEmitError(error);
        }
    }

    /**
     * Stops reading, waits up to 10 s for the sends in flight to be acknowledged (folding them into the position), and
     * closes the producer and the store.
     */
    @Override
    public void close() {
        sender.dispose();
        try {
            producer.close(Duration.ofSeconds(10));
        } finally {
            synchronized (unacknowledged) {
                position.close();
            }
            replay.close();
            stopped.tryEmitEmpty();
        }
    }
}
