package dev.routingreplay.sink;

import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.SlotStore;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.ArrayList;
import java.util.List;

/**
 * The store's Micrometer meters: {@code r3.store.bytes} per queue, {@code r3.store.files.deleted} per retention
 * reason, {@code r3.store.rows.missing} per missing-row reason and {@code r3.store.records.superseded} (see {@link ChronicleRoutingSink#open(StoreConfig, MeterRegistry)}), read from fields the writer keeps up
 * to date, so reading one costs a field read.
 *
 * <p>Threading: registered by the thread that opens the sink, removed by the one that closes it; Micrometer reads
 * them on any thread.
 */
final class StoreMeters {
    private final MeterRegistry registry;
    private final List<Meter> meters = new ArrayList<>();

    StoreMeters(MeterRegistry registry, QueueBytes journalBytes, QueueBytes requestBytes, RetentionSweeper retention, SlotStore slots,
            ChronicleRoutingSink sink) {
        this.registry = registry;
        meters.add(Gauge.builder("r3.store.bytes", journalBytes, QueueBytes::total).baseUnit("bytes")
                .description("bytes the store's queue files take on disk").tag("queue", "journal").register(registry));
        meters.add(Gauge.builder("r3.store.bytes", requestBytes, QueueBytes::total).baseUnit("bytes")
                .description("bytes the store's queue files take on disk").tag("queue", "requests").register(registry));
        meters.add(FunctionCounter.builder("r3.store.files.deleted", retention, RetentionSweeper::deletedByAge)
                .description("request files deleted by retention").tag("reason", "age").register(registry));
        meters.add(FunctionCounter.builder("r3.store.files.deleted", retention, RetentionSweeper::deletedBySize)
                .description("request files deleted by retention").tag("reason", "size").register(registry));
        meters.add(FunctionCounter.builder("r3.store.files.deleted", retention, RetentionSweeper::deletedByReaders)
                .description("request files deleted by retention").tag("reason", "readers").register(registry));
        for (MissingReason reason : MissingReason.values()) {
            meters.add(FunctionCounter.builder("r3.store.rows.missing", slots, s -> s.missingRowsGathered(reason))
                    .description("missing rows in request records, by reason").tag("reason", reason.label()).register(registry));
        }
        meters.add(FunctionCounter.builder("r3.store.records.superseded", sink, ChronicleRoutingSink::supersededFinishes)
                .description("finishes of an id already recorded in the round, stored as records that supersede the earlier one")
                .register(registry));
    }

    /** Removes the meters from the registry. */
    void remove() {
        for (Meter m : meters) {
            registry.remove(m);
        }
    }
}
