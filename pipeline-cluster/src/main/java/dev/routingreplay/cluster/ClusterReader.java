package dev.routingreplay.cluster;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.netty.http.client.HttpClient;

/**
 * A trainer's view of the cluster: the announcements of a Kafka topic, read as a member of a consumer group, each
 * turned into the routing it names, fetched from the node that holds it ({@link #read()}).
 *
 * <p>Guarantees of each subscription:
 * <ul>
 *   <li><b>Backpressure.</b> No more fetches are in flight than downstream requested and not yet received, and at most
 *       {@link Builder#maxInFlight}; announcements wait in Kafka (the consumer is paused) while {@code max(2 * maxInFlight, 16)}
 *       are queued.</li>
 *   <li><b>Commit after hand-off.</b> An offset is committed only when every announcement before it in its partition
 *       was handed downstream ({@code onNext} returned without cancelling the subscription) or dropped as a duplicate. A reader that stops or crashes
 *       leaves the rest to the group.</li>
 *   <li><b>Rebalance.</b> A revoked partition's handed-off offsets are committed before it goes; its queued
 *       announcements and fetches in flight are dropped, never handed downstream, so its next owner hands them
 *       downstream exactly once.</li>
 *   <li><b>Duplicates.</b> An announcement whose {@link Announcement#dedupKey()} (request id, checksum) was handed
 *       downstream before is dropped without a fetch: those of this reader (the last {@link Builder#dedup} keys) and
 *       those that precede a newly assigned partition's committed offset by at most the lookback.</li>
 *   <li><b>Nodes briefly away.</b> A fetch is retried with exponential backoff on connection failures, timeouts, 502,
 *       503, 504 and a body damaged on the way; when the node stays away past the retries, the Flux fails with a
 *       {@link ClusterReadException} naming the node and the request (nothing after the last hand-off is committed).</li>
 * </ul>
 *
 * <p>Threads: each subscription polls its consumer on a daemon thread of its own, {@code r3-cluster-<group>-<n>}, which
 * also emits: {@code onNext} runs there (it may block: that is time the reader does not poll, within
 * {@code max.poll.interval.ms}). Fetches run on Reactor Netty's event loops and never block them. Cancelling stops the
 * thread after a final commit and leaves the group.
 */
public final class ClusterReader {
    private final Settings settings;
    private final HttpClient http;

    /**
     * Everything a reader is built with.
     *
     * @param group the consumer group
     * @param topic the announcements' topic
     * @param consumerProperties the Kafka consumer's properties (bootstrap, group, deserializers, no auto commit, ...)
     * @param slice the part of each record to fetch
     * @param maxInFlight most fetches at once
     * @param retry how fetches retry
     * @param dedupCapacity dedup keys remembered
     * @param dedupLookback announcements read before a newly assigned partition's committed offset to learn their keys
     * @param onClose run on the reader's thread once a subscription committed for the last time and left the group
     * @param bootstrap the bootstrap servers, as given (named in errors)
     * @param connectTimeout the longest wait for the first answer of a broker
     */
    record Settings(String group, String topic, Map<String, Object> consumerProperties, Slice slice, int maxInFlight,
            Fetcher.RetryPolicy retry, int dedupCapacity, int dedupLookback, Runnable onClose, String bootstrap, Duration connectTimeout) {
        /** Announcements queued before the consumer pauses. */
        int maxQueued() {
            return Math.max(2 * maxInFlight, 16);
        }
    }

    private ClusterReader(Settings settings, HttpClient http) {
        this.settings = settings;
        this.http = http;
    }

    /** A reader of {@code topic} on the brokers {@code bootstrap} as a member of {@code group}; see {@link Builder}. */
    public static Builder builder(String bootstrap, String group, String topic) {
        return new Builder(bootstrap, group, topic);
    }

    /**
     * The announced requests with their routing, as the class says, for as long as the subscription lasts (it never
     * completes on its own). Each subscription is a new member of the group.
     */
    public Flux<ClusterRecord> read() {
        return read(Flux.never());
    }

    /**
     * As {@link #read()}, and when {@code stop} signals (any signal), the subscription stops taking announcements, hands
     * off nothing more, commits what was handed off, leaves the group and then completes: a graceful stop whose
     * {@code onComplete} says the commit is done (a cancel stops the same way but signals nothing).
     */
    public Flux<ClusterRecord> read(Publisher<?> stop) {
        return Flux.create(sink -> new ReaderLoop(settings, new Fetcher(http, settings.slice(), settings.retry()), sink).start(stop),
                FluxSink.OverflowStrategy.BUFFER);
    }

    /** What a reader's fetch would request for {@code a}: the URL on the node, slice included. */
    public String urlOf(Announcement a) {
        return new Fetcher(http, settings.slice(), settings.retry()).url(a);
    }

    /** Builds a {@link ClusterReader}; every setter checks its argument and names it when bad. */
    public static final class Builder {
        private final Map<String, Object> consumer = new HashMap<>();
        private final String group;
        private final String topic;
        private Slice slice = Slice.ALL;
        private int maxInFlight = 16;
        private int attempts = 8;
        private Duration firstBackoff = Duration.ofMillis(100);
        private Duration maxBackoff = Duration.ofSeconds(5);
        private Duration responseTimeout = Duration.ofSeconds(30);
        private int dedupCapacity = 200_000;
        private int dedupLookback = 10_000;
        private HttpClient http = HttpClient.create();
        private Runnable onClose = () -> { };
        private final String bootstrap;
        private Duration connectTimeout = Duration.ofSeconds(30);

        private Builder(String bootstrap, String group, String topic) {
            if (bootstrap == null || bootstrap.isBlank()) {
                throw new IllegalArgumentException("bootstrap servers are empty");
            }
            if (group == null || !group.matches("[A-Za-z0-9._-]{1,200}")) {
                throw new IllegalArgumentException("group must be 1 to 200 of [A-Za-z0-9._-], was '" + group + "'");
            }
            if (topic == null || !topic.matches("[A-Za-z0-9._-]{1,249}")) {
                throw new IllegalArgumentException("topic must be 1 to 249 of [A-Za-z0-9._-], was '" + topic + "'");
            }
            this.group = group;
            this.topic = topic;
            this.bootstrap = bootstrap;
            consumer.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            consumer.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            consumer.put(ConsumerConfig.CLIENT_ID_CONFIG, "r3-cluster-" + group);
        }

        /** The part of each record to fetch (default: all of it). */
        public Builder slice(Slice s) {
            this.slice = Objects.requireNonNull(s, "slice");
            return this;
        }

        /** Most fetches at once, 1 to 4096 (default 16); never more than downstream requested. */
        public Builder maxInFlight(int n) {
            if (n < 1 || n > 4096) {
                throw new IllegalArgumentException("maxInFlight must be in 1..4096, was " + n);
            }
            this.maxInFlight = n;
            return this;
        }

        /**
         * How a fetch retries when its node is away: {@code attempts} retries (0 to 1000, default 8), waiting
         * {@code first} (default 100 ms) and doubling, with jitter, up to {@code max} (default 5 s): about 16 s in all
         * by default.
         */
        public Builder retry(int attempts, Duration first, Duration max) {
            if (attempts < 0 || attempts > 1000 || first == null || max == null || first.isNegative() || first.isZero()
                    || max.compareTo(first) < 0) {
                throw new IllegalArgumentException("retry wants 0..1000 attempts and 0 < first <= max, was " + attempts + ", " + first + ", "
                        + max);
            }
            this.attempts = attempts;
            this.firstBackoff = first;
            this.maxBackoff = max;
            return this;
        }

        /** The longest wait for one fetch's response, body included (default 30 s); a timeout is retried. */
        public Builder responseTimeout(Duration timeout) {
            if (timeout == null || timeout.isNegative() || timeout.isZero()) {
                throw new IllegalArgumentException("responseTimeout must be positive, was " + timeout);
            }
            this.responseTimeout = timeout;
            return this;
        }

        /**
         * Dedup memory: the last {@code capacity} keys handed downstream (1 or more, default 200,000; about 150 bytes
         * each), and {@code lookback} announcements read before a newly assigned partition's committed offset (0 or
         * more, default 10,000; 0 skips the read).
         */
        public Builder dedup(int capacity, int lookback) {
            if (capacity < 1 || lookback < 0) {
                throw new IllegalArgumentException("dedup wants capacity >= 1 and lookback >= 0, was " + capacity + ", " + lookback);
            }
            this.dedupCapacity = capacity;
            this.dedupLookback = lookback;
            return this;
        }

        /**
         * A Kafka consumer property (e.g. {@code session.timeout.ms}, security settings). The reader's own
         * ({@code group.id}, deserializers, {@code enable.auto.commit=false}) cannot be overridden.
         */
        public Builder consumerProperty(String name, Object value) {
            consumer.put(Objects.requireNonNull(name, "name"), Objects.requireNonNull(value, "value"));
            return this;
        }

        /**
         * The longest wait for the first answer of a broker at the bootstrap servers (default 30 s): past it, with no
         * broker reachable, the subscription fails with a {@link ClusterReadException} naming the bootstrap servers,
         * instead of the Kafka client retrying forever.
         */
        public Builder connectTimeout(Duration timeout) {
            if (timeout == null || timeout.isNegative() || timeout.isZero()) {
                throw new IllegalArgumentException("connectTimeout must be positive, was " + timeout);
            }
            this.connectTimeout = timeout;
            return this;
        }

        /** The HTTP client fetches go through (default {@code HttpClient.create()}: Reactor Netty's shared pool). */
        public Builder httpClient(HttpClient client) {
            this.http = Objects.requireNonNull(client, "client");
            return this;
        }

        /**
         * A callback run on the reader's thread each time a subscription ended, after its final commit and after it
         * left the group, whether it completed, failed or was cancelled (a process that exits after a cancel waits for
         * it, so that its last commit is not cut off).
         */
        public Builder onClose(Runnable callback) {
            this.onClose = Objects.requireNonNull(callback, "callback");
            return this;
        }

        /** The reader. */
        public ClusterReader build() {
            Map<String, Object> props = new HashMap<>(consumer);
            props.putIfAbsent(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
            props.putIfAbsent(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, Math.max(2 * maxInFlight, 16));
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            Settings s = new Settings(group, topic, Map.copyOf(props), slice, maxInFlight,
                    new Fetcher.RetryPolicy(attempts, firstBackoff, maxBackoff, responseTimeout), dedupCapacity, dedupLookback, onClose, bootstrap, connectTimeout);
            return new ClusterReader(s, http);
        }
    }
}
