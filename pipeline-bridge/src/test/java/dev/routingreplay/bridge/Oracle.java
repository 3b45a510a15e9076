package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import dev.routingreplay.bridge.testing.FakeEngine;
import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.RolloutScenario;
import java.util.Map;

/**
 * A randomized rollout (core's {@link RolloutScenario}: chunked prefill, decode, rejected drafts, preemption, prefix
 * hits, swaps as slot moves, aborts, round clears, padding) played by a {@link FakeEngine} over the bridge, with the
 * scenario's own oracle of what each finished request must read back.
 */
final class Oracle implements AutoCloseable {
    final RoutingShape shape;
    final FakeEngine.Spec spec;
    final HostEngine source;
    final RolloutScenario scenario;
    private int finishes;

    Oracle(long seed, FakeEngine.Spec spec, int steps) {
        this.spec = spec;
        this.shape = new RoutingShape(spec.layers(), spec.topK(), spec.experts());
        this.source = new HostEngine(new HostDevice(), shape, spec.maxTokens(), type(spec.idBytes()), type(spec.slotBytes()));
        this.scenario = new RolloutScenario(seed, shape, source, spec.maxTokens(), steps);
    }

    private static ElementType type(int bytes) {
        return bytes == 4 ? ElementType.INT32 : ElementType.INT64;
    }

    /** KV slots the scenario uses. */
    int slotCapacity() {
        return scenario.slotCapacity();
    }

    /**
     * Plays up to {@code limit} events through {@code engine} (every other finish as a block table); false when the
     * scenario ended first.
     */
    boolean play(FakeEngine engine, long limit) {
        for (long i = 0; i < limit; i++) {
            EngineEvent e = scenario.next();
            if (e == null) {
                return false;
            }
            if (e instanceof RequestFinished f && finishes++ % 2 == 1 && f.seqLen() > 0) {
                int blockSize = 8; // the scenario's
                int[] slots = f.slots();
                int[] table = new int[(slots.length + blockSize - 1) / blockSize];
                for (int b = 0; b < table.length; b++) {
                    table[b] = slots[b * blockSize] / blockSize;
                }
                engine.finished(f.requestId(), table, blockSize, slots.length);
            } else {
                engine.send(e);
            }
        }
        return true;
    }

    /** Asserts that {@code sink} holds exactly the oracle's routing for every request finished so far. */
    void assertStored(MemoryRoutingSink sink) {
        Map<String, long[][]> expected = scenario.expected();
        for (Map.Entry<String, long[][]> e : expected.entrySet()) {
            RequestRouting got = sink.finished(e.getKey());
            assertNotNull(got, e.getKey() + " was not stored");
            long[][] rows = e.getValue();
            assertEquals(rows.length, got.seqLen(), e.getKey());
            long[] flat = got.toLongArray();
            for (int p = 0; p < rows.length; p++) {
                for (int j = 0; j < shape.idsPerRow(); j++) {
                    if (rows[p][j] != flat[p * shape.idsPerRow() + j]) {
                        throw new AssertionError(e.getKey() + " position " + p + " id " + j + ": expected " + rows[p][j] + " got "
                                + flat[p * shape.idsPerRow() + j]);
                    }
                }
            }
        }
    }

    @Override
    public void close() {
        source.close();
    }
}
