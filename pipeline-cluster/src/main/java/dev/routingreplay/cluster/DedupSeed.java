package dev.routingreplay.cluster;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Teaches a reader which announcements the group already handed downstream before it got a partition: on assignment it
 * reads up to {@link ClusterReader.Settings#dedupLookback()} announcements before the committed offset (with a consumer
 * of its own, outside the group) and remembers their dedup keys. So a re-announcement that lands after a rebalance is
 * dropped by the new owner too, when the original is at most that many records before it in its partition. Reader
 * thread only.
 */
final class DedupSeed implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(DedupSeed.class);
    private static final Duration MAX_READ = Duration.ofSeconds(30);

    private final ClusterReader.Settings settings;
    private KafkaConsumer<String, String> consumer;

    DedupSeed(ClusterReader.Settings settings) {
        this.settings = settings;
    }

    /** Adds to {@code seen} the keys of the announcements before each partition's position in {@code positions}. */
    void readBefore(Map<TopicPartition, Long> positions, SeenKeys seen) {
        int lookback = settings.dedupLookback();
        if (lookback <= 0 || positions.isEmpty()) {
            return;
        }
        KafkaConsumer<String, String> c = consumer();
        Map<TopicPartition, Long> begin = c.beginningOffsets(positions.keySet(), Duration.ofSeconds(30));
        Map<TopicPartition, Long> from = new HashMap<>();
        positions.forEach((tp, end) -> {
            long start = Math.max(begin.getOrDefault(tp, 0L), end - lookback);
            if (start < end) {
                from.put(tp, start);
            }
        });
        if (from.isEmpty()) {
            return;
        }
        c.assign(List.copyOf(from.keySet()));
        from.forEach(c::seek);
        long deadline = System.nanoTime() + MAX_READ.toNanos();
        int read = 0;
        while (!from.isEmpty() && System.nanoTime() < deadline) {
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
                TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                if (r.offset() < positions.get(tp)) {
                    try {
                        seen.add(Announcement.parse(r.value()).dedupKey());
                        read++;
                    } catch (RuntimeException e) {
                        // not an announcement: the reader fails on it when it reads it; nothing to remember
                    }
                }
            }
            from.keySet().removeIf(tp -> c.position(tp) >= positions.get(tp));
        }
        if (!from.isEmpty()) {
            LOG.warn("read only {} earlier announcements of {} within {}; duplicates of the rest may be handed downstream twice", read,
                    from.keySet(), MAX_READ);
        }
        c.assign(List.of());
    }

    private KafkaConsumer<String, String> consumer() {
        if (consumer == null) {
            Map<String, Object> props = new HashMap<>(settings.consumerProperties());
            props.remove(ConsumerConfig.GROUP_ID_CONFIG);
            props.remove(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG);
            props.remove(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG);
            props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            props.put(ConsumerConfig.CLIENT_ID_CONFIG, props.getOrDefault(ConsumerConfig.CLIENT_ID_CONFIG, "r3-cluster") + "-seed");
            consumer = new KafkaConsumer<>(props);
        }
        return consumer;
    }

    @Override
    public void close() {
        if (consumer != null) {
            consumer.close(Duration.ofSeconds(5));
        }
    }
}
