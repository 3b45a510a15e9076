package dev.routingreplay.cluster;

import dev.routingreplay.core.sink.RequestRouting;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.Disposable;
import reactor.core.publisher.FluxSink;

/**
 * One subscription of a {@link ClusterReader}: a Kafka consumer in the group, polled on a thread of its own (a
 * {@code KafkaConsumer} is not thread-safe), which also starts the fetches, hands the fetched records downstream and
 * commits. Only this thread touches the consumer and the state below; fetch results and downstream requests reach it
 * through a queue and an unpark.
 */
final class ReaderLoop implements Runnable {
    private static final Logger LOG = LoggerFactory.getLogger(ReaderLoop.class);
    private static final AtomicInteger THREADS = new AtomicInteger();
    private static final Duration IDLE_POLL = Duration.ofMillis(50);
    private static final long BUSY_PARK_NANOS = TimeUnit.MILLISECONDS.toNanos(2);
    private static final long COMMIT_EVERY_NANOS = TimeUnit.MILLISECONDS.toNanos(200);
    /** The longest single wait for a broker's first answer, so that a stop or cancel is seen while waiting. */
    private static final long CONNECT_SLICE_NANOS = TimeUnit.MILLISECONDS.toNanos(500);

    private final ClusterReader.Settings settings;
    private final Fetcher fetcher;
    private final FluxSink<ClusterRecord> sink;
    private final Thread thread;
    private final ConcurrentLinkedQueue<Done> done = new ConcurrentLinkedQueue<>();
    private volatile boolean cancelled;
    private volatile boolean stopping;

    private KafkaConsumer<String, String> consumer;
    private final ArrayDeque<Pending> queued = new ArrayDeque<>();
    private final Map<TopicPartition, PartitionProgress> progress = new HashMap<>();
    /** Per partition, the announcements whose fetch started and that were not handed downstream yet, in offset order. */
    private final Map<TopicPartition, ArrayDeque<Pending>> started = new HashMap<>();
    private int inFlight;
    private final Set<String> inFlightKeys = new HashSet<>();
    private final SeenKeys seen;
    private final DedupSeed seed;
    private long generations;
    private long lastCommitNanos;
    private boolean closing;

    /** An announcement polled and not yet finished. Identity matters: the same record polled twice is two. */
    private static final class Pending {
        final TopicPartition partition;
        final long offset;
        final long generation;
        final Announcement announcement;
        Disposable fetch;
        boolean completed;
        boolean dropped;
        RequestRouting routing;

        Pending(TopicPartition partition, long offset, long generation, Announcement announcement) {
            this.partition = partition;
            this.offset = offset;
            this.generation = generation;
            this.announcement = announcement;
        }
    }

    /** A fetch's result: the routing, or the error. */
    private record Done(Pending pending, RequestRouting routing, Throwable error) {
    }

    ReaderLoop(ClusterReader.Settings settings, Fetcher fetcher, FluxSink<ClusterRecord> sink) {
        this.settings = settings;
        this.fetcher = fetcher;
        this.sink = sink;
        this.seen = new SeenKeys(settings.dedupCapacity());
        this.seed = new DedupSeed(settings);
        this.thread = new Thread(this, "r3-cluster-" + settings.group() + "-" + THREADS.incrementAndGet());
        this.thread.setDaemon(true);
    }

    /** Any thread: stop after a final commit, then complete (a graceful stop; cancelling stops without completing). */
    void stop() {
        stopping = true;
        LockSupport.unpark(thread);
    }

    /** Hooks demand, cancellation and {@code stopSignal} (its first signal {@link #stop()}s), then starts the thread. */
    void start(org.reactivestreams.Publisher<?> stopSignal) {
        Disposable stopWatch = reactor.core.publisher.Flux.from(stopSignal).take(1).subscribe(x -> stop(), e -> stop(), this::stop);
        sink.onRequest(n -> LockSupport.unpark(thread));
        sink.onDispose(() -> {
            stopWatch.dispose();
            cancelled = true;
            LockSupport.unpark(thread);
        });
        thread.start();
    }

    @Override
    public void run() {
        Throwable failure = null;
        try {
            consumer = new KafkaConsumer<>(settings.consumerProperties());
            awaitBroker();
            consumer.subscribe(List.of(settings.topic()), new Rebalance());
            while (!cancelled && !stopping && failure == null) {
                boolean ready = !done.isEmpty() || canDispatch();
                ConsumerRecords<String, String> records = consumer.poll(ready || inFlight > 0 ? Duration.ZERO : IDLE_POLL);
                for (ConsumerRecord<String, String> r : records) {
                    enqueue(r);
                }
                failure = handOff();
                if (failure == null) {
                    dispatch();
                    flowControl();
                    commit(false);
                    if (inFlight > 0 && done.isEmpty() && !canDispatch()) {
                        LockSupport.parkNanos(this, BUSY_PARK_NANOS);
                    }
                }
            }
        } catch (Throwable t) {
            failure = t instanceof ClusterReadException ? t : new ClusterReadException(null, "the Kafka consumer of group '"
                    + settings.group() + "' on topic " + settings.topic() + " failed: " + t, t);
        } finally {
            shutdown(failure);
        }
    }

    /**
     * Waits for a broker at the bootstrap servers to answer a metadata request (the consumer's first contact), at most
     * the connect timeout; past it, fails naming the bootstrap servers (the Kafka client alone would retry forever and
     * only log warnings).
     */
    private void awaitBroker() {
        long deadline = System.nanoTime() + settings.connectTimeout().toNanos();
        while (!cancelled && !stopping) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new ClusterReadException(null, "no Kafka broker answered at " + settings.bootstrap() + " within "
                        + settings.connectTimeout().toMillis() + " ms (the reader's connect timeout); check the bootstrap servers and that a "
                        + "broker runs there", null);
            }
            try {
                consumer.listTopics(Duration.ofNanos(Math.min(left, CONNECT_SLICE_NANOS)));
                return;
            } catch (org.apache.kafka.common.errors.TimeoutException e) {
                // no answer yet: the client keeps connecting; ask again until the deadline
            }
        }
    }

    private boolean canDispatch() {
        return !queued.isEmpty() && inFlight < Math.min(settings.maxInFlight(), sink.requestedFromDownstream());
    }

    private void enqueue(ConsumerRecord<String, String> r) {
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        PartitionProgress pp = progress.get(tp);
        if (pp == null) {
            return;
        }
        Announcement a;
        try {
            a = Announcement.parse(r.value());
        } catch (RuntimeException e) {
            throw new ClusterReadException(null, "topic " + r.topic() + " partition " + r.partition() + " offset " + r.offset()
                    + " holds no announcement: " + e.getMessage(), e);
        }
        pp.polled(r.offset());
        queued.add(new Pending(tp, r.offset(), pp.generation, a));
    }

    /** Starts fetches while downstream demand and the in-flight bound allow; drops duplicates without fetching them. */
    private void dispatch() {
        while (canDispatch()) {
            Pending p = queued.poll();
            PartitionProgress pp = progress.get(p.partition);
            if (pp == null || pp.generation != p.generation) {
                continue;
            }
            String key = p.announcement.dedupKey();
            if (seen.contains(key) || inFlightKeys.contains(key)) {
                pp.finished(p.offset);
                continue;
            }
            inFlightKeys.add(key);
            inFlight++;
            started.computeIfAbsent(p.partition, tp -> new ArrayDeque<>()).add(p);
            // a result that comes at once only reaches the done queue: this thread takes it after this
            p.fetch = fetcher.fetch(p.announcement).subscribe(r -> completed(new Done(p, r, null)), e -> completed(new Done(p, null, e)));
        }
    }

    /** Any thread: a fetch ended. */
    private void completed(Done d) {
        done.add(d);
        LockSupport.unpark(thread);
    }

    /**
     * Hands finished fetches downstream (this thread), in offset order within each partition: a fetch that finished
     * before an earlier one of its partition waits for it, so what was handed downstream is always a prefix of the
     * partition and the commit covers exactly it (a later owner never re-reads a record handed downstream). Results of
     * partitions revoked since are dropped. Returns a fetch's failure, if any.
     */
    private Throwable handOff() {
        Done d;
        while ((d = done.poll()) != null) {
            Pending p = d.pending();
            if (p.dropped || cancelled) {
                continue;
            }
            if (d.error() != null) {
                return d.error();
            }
            p.completed = true;
            p.routing = d.routing();
            ArrayDeque<Pending> order = started.get(p.partition);
            PartitionProgress pp = progress.get(p.partition);
            while (order != null && !order.isEmpty() && order.peek().completed && !cancelled) {
                Pending head = order.poll();
                inFlight--;
                String key = head.announcement.dedupKey();
                inFlightKeys.remove(key);
                sink.next(new ClusterRecord(head.announcement, head.routing, head.partition.partition(), head.offset));
                if (sink.isCancelled()) {
                    // downstream cancelled in onNext (it threw, or gave up): it did not take the record; the group reads it again
                    break;
                }
                seen.add(key);
                pp.finished(head.offset);
            }
        }
        return null;
    }

    /** Pauses fetching from Kafka while enough announcements wait; resumes below that. */
    private void flowControl() {
        if (queued.size() >= settings.maxQueued()) {
            consumer.pause(consumer.assignment());
        } else if (!consumer.paused().isEmpty()) {
            consumer.resume(consumer.paused());
        }
    }

    private void commit(boolean now) {
        long t = System.nanoTime();
        if (!now && t - lastCommitNanos < COMMIT_EVERY_NANOS) {
            return;
        }
        lastCommitNanos = t;
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        progress.forEach((tp, pp) -> {
            if (now || pp.commitDue()) {
                offsets.put(tp, new OffsetAndMetadata(pp.commitOffset()));
            }
        });
        if (offsets.isEmpty()) {
            return;
        }
        if (now) {
            consumer.commitSync(offsets, Duration.ofSeconds(10));
        } else {
            consumer.commitAsync(offsets, (o, e) -> {
                if (e != null) {
                    LOG.debug("commit of {} failed, the next one carries it: {}", o, e.toString());
                }
            });
        }
        offsets.forEach((tp, o) -> progress.get(tp).committed(o.offset()));
    }

    /** Drops a partition: its queued announcements and fetches in flight (the next owner reads them from the commit). */
    private void drop(Collection<TopicPartition> partitions) {
        Set<TopicPartition> gone = new HashSet<>(partitions);
        queued.removeIf(p -> gone.contains(p.partition));
        for (TopicPartition tp : gone) {
            ArrayDeque<Pending> order = started.remove(tp);
            if (order != null) {
                for (Pending p : order) {
                    p.dropped = true;
                    p.fetch.dispose();
                    inFlightKeys.remove(p.announcement.dedupKey());
                    inFlight--;
                }
            }
            progress.remove(tp);
        }
    }

    private final class Rebalance implements ConsumerRebalanceListener {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (TopicPartition tp : partitions) {
                PartitionProgress pp = progress.get(tp);
                if (pp != null) {
                    offsets.put(tp, new OffsetAndMetadata(pp.commitOffset()));
                }
            }
            try {
                if (!offsets.isEmpty() && !closing) {
                    consumer.commitSync(offsets, Duration.ofSeconds(10));
                }
            } finally {
                drop(partitions);
            }
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            drop(partitions);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            Map<TopicPartition, Long> positions = new HashMap<>();
            for (TopicPartition tp : partitions) {
                long position = consumer.position(tp, Duration.ofSeconds(30));
                progress.put(tp, new PartitionProgress(++generations, position));
                positions.put(tp, position);
            }
            seed.readBefore(positions, seen);
        }
    }

    private void shutdown(Throwable failure) {
        started.values().forEach(order -> order.forEach(p -> {
            p.dropped = true;
            p.fetch.dispose();
        }));
        started.clear();
        try {
            if (consumer != null) {
                try {
                    commit(true);
                } catch (RuntimeException e) {
                    LOG.warn("final commit of group '{}' failed; the next reader re-reads from the previous commit: {}", settings.group(),
                            e.toString());
                }
                closing = true;
                consumer.close(Duration.ofSeconds(5));
            }
        } catch (RuntimeException e) {
            LOG.warn("closing the consumer of group '{}' failed: {}", settings.group(), e.toString());
        } finally {
            seed.close();
            try {
                settings.onClose().run();
            } catch (RuntimeException e) {
                LOG.warn("the reader's onClose callback failed: {}", e.toString());
            }
            if (failure != null) {
                sink.error(failure);
            } else if (!cancelled) {
                sink.complete();
            }
        }
    }
}
