package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The routing contract (docs/contract.md) as a property: random interleavings of admit, step, finish, abort, move and
 * round clear, driven the way integrators get it wrong (reused ids, finishes on slots the request never wrote, expert
 * ids out of range, one expert twice in a layer, slots out of range in steps, finishes and moves, finishes and aborts of
 * unknown ids, cached prefixes of an earlier round), through {@link EngineFeed} and a real pipeline into a
 * {@link MemoryRoutingSink}.
 *
 * <p>The oracle is written from the contract, not from the code: it knows, per slot, which step of which round last
 * wrote it and whether that row was valid, and per request its admission and declared cached prefix, and it knows the
 * engine's true row of every position. Checked: no row returned as data ever differs from the engine's true row; every
 * position is data or missing exactly as the contract says, with the reason it names; every injected fault shows as a
 * missing row with the right reason or as a {@link RequestFault} of its request; every request without a fault is
 * exact; the run itself never fails.
 */
class ContractPropertyTest {
    private static final RoutingShape SHAPE = new RoutingShape(3, 2, 16);
    private static final int SLOTS = 96;
    private static final int MAX_TOKENS = 16;
    private static final int RUNS = 150;
    private static final int EVENTS_PER_RUN = 300;

    /** What an injected fault should become. */
    enum Fault { INVALID_ID, DUPLICATE_EXPERT, BAD_SLOT_IN_STEP, BAD_SLOT_IN_FINISH, BAD_SLOT_IN_MOVE, UNWRITTEN_ROWS, STALE_PREFIX, UNKNOWN_ID, REUSED_ID }

    /*
     * The one misuse the contract cannot see, and which the injection therefore leaves out (counted as "undetectable"):
     * a finish naming a slot that another request, live beside it, wrote after this request's admission and has not
     * finished yet. Nothing in the event stream says whose slot that is (docs/contract.md, "What the store cannot see").
     */

    @Test
    void noFetchedRowEverDiffersFromTheEngineAndEveryInjectedFaultIsReported() throws Exception {
        Totals totals = new Totals();
        for (int seed = 0; seed < RUNS; seed++) {
            new Run(seed, totals).play();
        }
        System.out.println("contract property: " + totals.describe());
        assertEquals(0, totals.wrongRows, "rows returned as data that differ from the engine's: " + totals.describe());
        assertEquals(0, totals.mismatches, "positions whose verdict differs from the contract's: " + totals.describe());
        for (Fault f : Fault.values()) {
            assertTrue(totals.injected.getOrDefault(f, 0) > 0, "every fault kind was injected: " + totals.describe());
        }
        assertTrue(totals.cleanRequests > 1000 && totals.dataRows > 10_000, totals.describe());
    }

    /** Counts over all runs. */
    static final class Totals {
        int runs;
        int events;
        final Map<Fault, Integer> injected = new EnumMap<>(Fault.class);
        int records;
        int cleanRequests;
        long dataRows;
        long missingRows;
        long wrongRows;
        long mismatches;
        int undetectable;
        int requestFaults;

        void inject(Fault f) {
            injected.merge(f, 1, Integer::sum);
        }

        String describe() {
            int faults = injected.values().stream().mapToInt(Integer::intValue).sum();
            return runs + " runs, " + events + " events, " + records + " records (" + cleanRequests + " without a fault), " + faults
                    + " faults injected " + injected + ", " + dataRows + " data rows, " + missingRows + " missing rows, " + requestFaults
                    + " request faults answered, " + undetectable + " undetectable injections left out, wrong rows " + wrongRows
                    + ", verdict mismatches " + mismatches;
        }
    }

    /** One live (or finished) incarnation of a request, as the engine sees it. */
    static final class Req {
        final String id;
        final long admittedAt;
        final int cached;
        final List<Integer> slots = new ArrayList<>();
        final List<long[]> truth = new ArrayList<>();
        boolean faulted;

        Req(String id, long admittedAt, int cached) {
            this.id = id;
            this.admittedAt = admittedAt;
            this.cached = cached;
        }
    }

    /** A finished request whose leading slots stay reserved, so a later request may hit them as its cached prefix. */
    record Donor(List<Integer> slots, List<long[]> rows, int round) {
    }

    /** What the store must hand out for one finish: per position the row (data) or the reason (missing). */
    record Expected(String id, long[][] rows, MissingReason[] reasons, boolean clean) {
    }

    static final class Run {
        private final Random rng;
        private final Totals totals;
        // the oracle's store: per slot the stamp (engine step count) and round of the last write, its state and row
        private final long[] slotStamp = new long[SLOTS];
        private final int[] slotRound = new int[SLOTS];
        private final MissingReason[] slotState = new MissingReason[SLOTS];
        private final long[] slotGathered = new long[SLOTS];
        private final long[][] slotRow = new long[SLOTS][];
        private final Map<String, Req> live = new LinkedHashMap<>();
        private final ArrayDeque<Integer> free = new ArrayDeque<>();
        private final List<Donor> donors = new ArrayList<>();
        private final List<String> finishedThisRound = new ArrayList<>();
        private final Map<String, Expected> latest = new HashMap<>();
        private final List<String> faultIds = new ArrayList<>();
        private Donor staleDonor;
        private long steps;
        private int round;
        private int nextId;
        private int finishes;
        private int badSlotsSent;
        private int badIdsSent;

        Run(long seed, Totals totals) {
            this.rng = new Random(seed);
            this.totals = totals;
            for (int s = 0; s < SLOTS; s++) {
                free.add(s);
            }
        }

        void play() throws Exception {
            HostDevice device = new HostDevice();
            List<EngineEvent> out = new CopyOnWriteArrayList<>();
            List<Throwable> errors = new CopyOnWriteArrayList<>();
            CountDownLatch done = new CountDownLatch(1);
            try (HostEngine engine = new HostEngine(device, SHAPE, MAX_TOKENS); MemoryRoutingSink sink = new MemoryRoutingSink(SHAPE, SLOTS)) {
                List<StepFault> stepFaults = new CopyOnWriteArrayList<>();
                CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(1 + rng.nextInt(4))
                        .maxTokensPerStep(MAX_TOKENS).onStepFault(stepFaults::add).build();
                EngineFeed feed = new EngineFeed();
                feed.flux().transform(pipeline).doFinally(s -> done.countDown()).subscribe(out::add, errors::add);
                for (int e = 0; e < EVENTS_PER_RUN; e++) {
                    next(engine, feed);
                }
                feed.complete();
                assertTrue(done.await(30, TimeUnit.SECONDS), "the run ended");
                assertTrue(errors.isEmpty(), "no fault ends the run: " + errors);
                List<String> answered = new ArrayList<>();
                for (EngineEvent e : out) {
                    if (e instanceof RequestFault f) {
                        answered.add(f.requestId());
                    }
                }
                assertEquals(faultIds, answered, "every unknown finish or abort is its request's fault, in order");
                assertEquals(finishes, sink.finishedIds().size(), "every accepted finish is a record");
                assertEquals(badSlotsSent, stepFaults.stream().mapToInt(StepFault::invalidSlots).sum(), "every bad slot in a step is told");
                assertEquals(badIdsSent, stepFaults.stream().mapToInt(StepFault::invalidIds).sum(), "every bad id in a step is told");
                totals.requestFaults += answered.size();
                for (Expected x : latest.values()) {
                    check(x, sink.finished(x.id()));
                }
                totals.runs++;
                totals.events += EVENTS_PER_RUN;
            }
        }

        private void check(Expected x, RequestRouting got) {
            assertNotNull(got, x.id());
            assertEquals(x.rows().length, got.seqLen(), x.id());
            totals.records++;
            if (x.clean()) {
                totals.cleanRequests++;
            }
            int perRow = SHAPE.idsPerRow();
            for (int p = 0; p < x.rows().length; p++) {
                MissingReason want = x.reasons()[p];
                MissingReason have = got.missingReason(p);
                if (have == null) {
                    totals.dataRows++;
                    for (int j = 0; j < perRow; j++) {
                        if (x.rows()[p] == null || got.id(p, j / SHAPE.topK(), j % SHAPE.topK()) != x.rows()[p][j]) {
                            totals.wrongRows++;
                            break;
                        }
                    }
                } else {
                    totals.missingRows++;
                }
                if (want != have) {
                    totals.mismatches++;
                }
            }
        }

        private void next(HostEngine engine, EngineFeed feed) {
            int dice = rng.nextInt(100);
            if (dice < 14) {
                admit(feed);
            } else if (dice < 62) {
                step(engine, feed);
            } else if (dice < 80) {
                finish(feed);
            } else if (dice < 85) {
                abort(feed);
            } else if (dice < 91) {
                move(feed);
            } else if (dice < 96) {
                unknown(feed);
            } else if (dice < 98) {
                clear(feed);
            } else {
                admit(feed);
            }
        }

        private void admit(EngineFeed feed) {
            if (live.size() >= 8) {
                return;
            }
            String id;
            boolean reused = !finishedThisRound.isEmpty() && rng.nextInt(8) == 0;
            if (reused) {
                id = finishedThisRound.remove(rng.nextInt(finishedThisRound.size())); // a retry: the same id again
                totals.inject(Fault.REUSED_ID);
            } else {
                id = "r" + nextId++;
            }
            Donor donor = null;
            boolean stale = false;
            if (staleDonor != null && rng.nextInt(4) == 0) {
                donor = staleDonor;
                staleDonor = null;
                stale = true;
                totals.inject(Fault.STALE_PREFIX);
            } else if (!donors.isEmpty() && rng.nextInt(3) == 0) {
                donor = donors.get(rng.nextInt(donors.size()));
            }
            int cached = donor == null ? 0 : 1 + rng.nextInt(donor.slots().size());
            Req r = new Req(id, steps, cached);
            for (int p = 0; p < cached; p++) {
                r.slots.add(donor.slots().get(p));
                r.truth.add(donor.rows().get(p));
            }
            r.faulted = stale;
            live.put(id, r);
            feed.emit(new RequestAdmitted(id, cached));
        }

        private long[] validRow() {
            long[] row = new long[SHAPE.idsPerRow()];
            for (int l = 0; l < SHAPE.moeLayers(); l++) {
                List<Long> experts = new ArrayList<>();
                for (long e = 0; e < SHAPE.numExperts(); e++) {
                    experts.add(e);
                }
                Collections.shuffle(experts, rng);
                for (int k = 0; k < SHAPE.topK(); k++) {
                    row[l * SHAPE.topK() + k] = experts.get(k);
                }
            }
            return row;
        }

        private void step(HostEngine engine, EngineFeed feed) {
            List<long[]> tokens = new ArrayList<>(); // {slot word, row index}
            List<Req> lost = new ArrayList<>(); // requests a row of which went nowhere
            List<long[]> rows = new ArrayList<>();
            List<Req> order = new ArrayList<>(live.values());
            Collections.shuffle(order, rng);
            long stamp = steps + 1;
            for (Req r : order.subList(0, Math.min(3, order.size()))) {
                int n = 1 + rng.nextInt(4);
                for (int i = 0; i < n && tokens.size() < MAX_TOKENS - 2 && !free.isEmpty(); i++) {
                    int slot = free.poll();
                    long[] row = validRow();
                    r.slots.add(slot);
                    r.truth.add(row);
                    long word = slot;
                    int fault = rng.nextInt(40);
                    long[] sent = row.clone();
                    if (fault == 0) {
                        sent[rng.nextInt(sent.length)] = rng.nextBoolean() ? SHAPE.numExperts() + rng.nextInt(3) : -1 - rng.nextInt(3);
                        totals.inject(Fault.INVALID_ID);
                        badIdsSent++;
                        write(slot, stamp, MissingReason.INVALID_ID, null);
                        r.faulted = true;
                    } else if (fault == 1) {
                        int l = rng.nextInt(SHAPE.moeLayers());
                        sent[l * SHAPE.topK() + 1] = sent[l * SHAPE.topK()];
                        totals.inject(Fault.DUPLICATE_EXPERT);
                        write(slot, stamp, MissingReason.DUPLICATE_EXPERT, null);
                        r.faulted = true;
                    } else if (fault == 2) {
                        word = SLOTS + rng.nextInt(1000); // the row goes nowhere; the slot keeps what it had
                        totals.inject(Fault.BAD_SLOT_IN_STEP);
                        badSlotsSent++;
                        r.faulted = true;
                        lost.add(r);
                    } else {
                        write(slot, stamp, null, row);
                    }
                    tokens.add(new long[] {word, rows.size()});
                    rows.add(sent);
                }
            }
            if (rng.nextInt(3) == 0 && tokens.size() < MAX_TOKENS) {
                tokens.add(rng.nextInt(tokens.size() + 1), new long[] {-1, -1}); // padding, garbage ids
            }
            steps = stamp;
            long[] mapping = new long[tokens.size()];
            for (int t = 0; t < mapping.length; t++) {
                mapping[t] = tokens.get(t)[0];
            }
            feed.emit(engine.step(stamp, mapping, (t, l, k) -> {
                long[] tok = tokens.get(t);
                return tok[1] < 0 ? 1_000_000 + t : rows.get((int) tok[1])[l * SHAPE.topK() + k];
            }));
            // what docs/contract.md asks of an engine told of a slot out of range (StepFault, REQUEST_ERROR code 2): abort
            // the request whose token it was, since its position would read whatever the slot held
            for (Req r : lost) {
                if (live.remove(r.id) != null) {
                    feed.emit(new RequestAborted(r.id));
                    release(r, false);
                }
            }
        }

        private void write(int slot, long stamp, MissingReason state, long[] row) {
            slotGathered[slot] = 0;
            slotStamp[slot] = stamp;
            slotRound[slot] = round;
            slotState[slot] = state;
            slotRow[slot] = row;
        }

        /** The contract's verdict for position {@code p} of {@code r} at slot {@code slot}: null for data. */
        private MissingReason verdict(Req r, int p, int slot) {
            if (slot < 0 || slot >= SLOTS) {
                return MissingReason.BAD_SLOT;
            }
            if (slotStamp[slot] == 0) {
                return MissingReason.NEVER_WRITTEN;
            }
            if (slotRound[slot] != round) {
                return MissingReason.STALE_ROUND;
            }
            if (p >= r.cached && slotStamp[slot] <= r.admittedAt) {
                return MissingReason.BEFORE_ADMISSION;
            }
            if (p >= r.cached && slotGathered[slot] >= slotStamp[slot]) {
                return MissingReason.REUSED_SLOT; // another request's finish took it as a row it computed
            }
            return slotState[slot];
        }

        private void finish(EngineFeed feed) {
            if (live.isEmpty()) {
                return;
            }
            Req r = pick();
            live.remove(r.id);
            int[] slots = r.slots.stream().mapToInt(Integer::intValue).toArray();
            List<long[]> truth = new ArrayList<>(r.truth);
            int fault = rng.nextInt(10);
            if (fault == 0 && slots.length > 0) {
                // positions the request never wrote: slots another request used (or never used)
                int extra = 1 + rng.nextInt(3);
                int[] more = java.util.Arrays.copyOf(slots, slots.length + extra);
                int n = slots.length;
                for (int i = slots.length; i < more.length; i++) {
                    int s = rng.nextInt(SLOTS);
                    if (verdict(r, n, s) == null) {
                        totals.undetectable++; // written after the admission by a request still live: see the note above
                        continue;
                    }
                    more[n++] = s;
                    truth.add(null);
                }
                if (n > slots.length) {
                    slots = java.util.Arrays.copyOf(more, n);
                    totals.inject(Fault.UNWRITTEN_ROWS);
                    r.faulted = true;
                }
            } else if (fault == 1 && slots.length > 0) {
                slots = slots.clone();
                slots[rng.nextInt(slots.length)] = rng.nextBoolean() ? SLOTS + rng.nextInt(50) : -2 - rng.nextInt(5);
                totals.inject(Fault.BAD_SLOT_IN_FINISH);
                r.faulted = true;
            }
            long[][] rows = new long[slots.length][];
            MissingReason[] reasons = new MissingReason[slots.length];
            for (int p = 0; p < slots.length; p++) {
                reasons[p] = verdict(r, p, slots[p]);
                if (reasons[p] == null) {
                    rows[p] = slotRow[slots[p]];
                    if (truth.get(p) == null || !java.util.Arrays.equals(rows[p], truth.get(p))) {
                        throw new AssertionError("oracle bug: the contract vouches for a row that is not the engine's (" + r.id + " position " + p + ")");
                    }
                }
            }
            boolean clean = !r.faulted;
            if (clean) {
                for (MissingReason reason : reasons) {
                    if (reason != null) {
                        throw new AssertionError("oracle bug: a request without a fault has a missing row: " + r.id);
                    }
                }
            }
            for (int p = r.cached; p < slots.length; p++) {
                if (reasons[p] == null) {
                    slotGathered[slots[p]] = steps; // the positions it computed are its own now
                }
            }
            latest.put(r.id, new Expected(r.id, rows, reasons, clean));
            finishedThisRound.add(r.id);
            finishes++;
            feed.emit(new RequestFinished(r.id, slots));
            release(r, true);
        }

        private Req pick() {
            List<Req> all = new ArrayList<>(live.values());
            return all.get(rng.nextInt(all.size()));
        }

        /** The request's own slots go back to the pool, or stay reserved as a donor of a cached prefix. */
        private void release(Req r, boolean mayDonate) {
            List<Integer> own = new ArrayList<>();
            List<long[]> ownRows = new ArrayList<>();
            for (int p = r.cached; p < r.slots.size(); p++) {
                int s = r.slots.get(p);
                if (s >= 0 && s < SLOTS && !reserved(s) && !own.contains(s)) {
                    own.add(s);
                    ownRows.add(r.truth.get(p));
                }
            }
            if (mayDonate && !r.faulted && r.cached == 0 && !own.isEmpty() && donors.size() < 4 && rng.nextBoolean()) {
                donors.add(new Donor(own, ownRows, round));
            } else {
                free.addAll(own);
            }
        }

        private boolean reserved(int slot) {
            for (Donor d : donors) {
                if (d.slots().contains(slot)) {
                    return true;
                }
            }
            return staleDonor != null && staleDonor.slots().contains(slot) || free.contains(slot);
        }

        private void abort(EngineFeed feed) {
            if (live.isEmpty()) {
                return;
            }
            Req r = pick();
            live.remove(r.id);
            feed.emit(new RequestAborted(r.id));
            release(r, false);
        }

        private void move(EngineFeed feed) {
            List<Req> movable = live.values().stream().filter(q -> q.slots.size() > q.cached).toList();
            if (movable.isEmpty()) {
                return;
            }
            Req r = movable.get(rng.nextInt(movable.size()));
            List<Integer> src = new ArrayList<>();
            List<Integer> dst = new ArrayList<>();
            for (int p = r.cached; p < r.slots.size() && !free.isEmpty(); p++) {
                int from = r.slots.get(p);
                if (from < 0 || from >= SLOTS || src.contains(from)) {
                    continue;
                }
                src.add(from);
                dst.add(free.poll());
            }
            if (src.isEmpty()) {
                return;
            }
            boolean bad = rng.nextInt(8) == 0;
            if (bad) {
                dst.set(0, SLOTS + rng.nextInt(20));
                totals.inject(Fault.BAD_SLOT_IN_MOVE);
                r.faulted = true;
            }
            // apply to the oracle: all sources read before any destination is written
            long[] stamps = new long[src.size()];
            int[] rounds = new int[src.size()];
            MissingReason[] states = new MissingReason[src.size()];
            long[][] rowsOf = new long[src.size()][];
            long[] gatheredOf = new long[src.size()];
            for (int i = 0; i < src.size(); i++) {
                int s = src.get(i);
                stamps[i] = slotStamp[s];
                rounds[i] = slotRound[s];
                states[i] = slotState[s];
                rowsOf[i] = slotRow[s];
                gatheredOf[i] = slotGathered[s];
            }
            for (int i = 0; i < src.size(); i++) {
                int d = dst.get(i);
                if (d < SLOTS) {
                    slotStamp[d] = stamps[i];
                    slotRound[d] = rounds[i];
                    slotState[d] = states[i];
                    slotRow[d] = rowsOf[i];
                    slotGathered[d] = gatheredOf[i];
                }
                r.slots.set(r.slots.indexOf(src.get(i)), d); // the engine's block table points at the destination
                free.add(src.get(i));
            }
            feed.emit(new SlotsMoved(src.stream().mapToInt(Integer::intValue).toArray(), dst.stream().mapToInt(Integer::intValue).toArray()));
        }

        private void unknown(EngineFeed feed) {
            String id = rng.nextBoolean() && !finishedThisRound.isEmpty()
                    ? finishedThisRound.get(rng.nextInt(finishedThisRound.size())) // finished already, not admitted again
                    : "ghost-" + rng.nextInt(1000);
            if (live.containsKey(id)) {
                return;
            }
            totals.inject(Fault.UNKNOWN_ID);
            faultIds.add(id);
            feed.emit(rng.nextBoolean() ? new RequestFinished(id, new int[] {rng.nextInt(SLOTS)}) : new RequestAborted(id));
        }

        private void clear(EngineFeed feed) {
            // keep one donor's slots unwritten into the next round: a later admission that declares them as its cached
            // prefix reads rows of an earlier round
            Donor keep = donors.isEmpty() ? null : donors.get(rng.nextInt(donors.size()));
            round++;
            live.clear();
            donors.clear();
            finishedThisRound.clear();
            free.clear();
            staleDonor = keep;
            for (int s = 0; s < SLOTS; s++) {
                if (keep == null || !keep.slots().contains(s)) {
                    free.add(s);
                }
            }
            feed.emit(new RoundCleared(round));
        }
    }
}
