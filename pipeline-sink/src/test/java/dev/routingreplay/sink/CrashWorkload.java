package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The deterministic workload of the crash and recovery tests, and its oracle. Request r owns block {@code r % 64}
 * (8 slots) and, by {@code r % 4}:
 * <ul>
 *   <li>0: plain: steps 2r and 2r+1 write positions 0-3 and 4-7 into its block;</li>
 *   <li>1: a prefix hit: positions 0-3 are request r-1's cached block (same tokens, so r-1's routing); only step
 *       2r+1 runs (not on the first request of a round, which is plain);</li>
 *   <li>2: a move: after step 2r, positions 0-3 move to a spare block ({@code 64 + r % 8}), as a swap to a host tier;</li>
 *   <li>3: a swap: after both steps, the two halves of its block exchange places in one {@link SlotsMoved}.</li>
 * </ul>
 * After every {@value #ROUND}th request the round is cleared. Every op but an admit writes one journal excerpt.
 */
final class CrashWorkload {
    static final RoutingShape SHAPE = new RoutingShape(6, 4, 300);
    static final int BLOCK = 8;
    static final int BLOCKS = 64;
    static final int SPARE_BLOCKS = 8;
    static final int SLOTS = (BLOCKS + SPARE_BLOCKS) * BLOCK;
    static final int ROUND = 128;

    private CrashWorkload() {
    }

    /** One engine event of the plan. */
    sealed interface Op {
        /** Whether the sink writes a journal excerpt for it. */
        default boolean journaled() {
            return true;
        }
    }

    record Admit(long request) implements Op {
        @Override
        public boolean journaled() {
            return false;
        }
    }

    /** A capture step: token t writes the routing of (request, positions[t]) into slots[t]. */
    record Step(long stepId, long request, int[] slots, int[] positions) implements Op {
    }

    record Move(int[] src, int[] dst) implements Op {
    }

    record Finish(long request, int[] slots) implements Op {
    }

    record Clear(long round) implements Op {
    }

    static String requestId(long r) {
        return "crash-" + r;
    }

    static long request(String id) {
        return Long.parseLong(id.substring("crash-".length()));
    }

    static int slot(long r, int position) {
        return (int) ((r % BLOCKS) * BLOCK + position);
    }

    static int spare(long r, int position) {
        return (int) ((BLOCKS + r % SPARE_BLOCKS) * BLOCK + position);
    }

    static boolean prefixHit(long r) {
        return r % 4 == 1 && r % ROUND != 0;
    }

    /** The request whose forward pass produced position {@code p} of request {@code r}. */
    static long origin(long r, int p) {
        return prefixHit(r) && p < 4 ? r - 1 : r;
    }

    static int id(long origin, int position, int layer, int k) {
        return Routing.id(origin, position, layer, k, SHAPE.numExperts());
    }

    private static int[] range(int from, int to) {
        int[] a = new int[to - from];
        for (int i = 0; i < a.length; i++) {
            a[i] = from + i;
        }
        return a;
    }

    private static int[] slots(long r, int[] positions, boolean spare) {
        int[] s = new int[positions.length];
        for (int i = 0; i < s.length; i++) {
            s[i] = spare ? spare(r, positions[i]) : slot(r, positions[i]);
        }
        return s;
    }

    /** The ops of request {@code r}, in engine order, including the clear that may follow its finish. */
    static List<Op> ops(long r) {
        List<Op> ops = new ArrayList<>(6);
        int[] low = range(0, 4);
        int[] high = range(4, 8);
        ops.add(new Admit(r));
        int[] finish;
        switch ((int) (r % 4)) {
            case 1:
                if (prefixHit(r)) {
                    ops.add(new Step(2 * r + 1, r, slots(r, high, false), high));
                    finish = concat(slots(r - 1, low, false), slots(r, high, false));
                    break;
                }
                // the first request of a round has nothing cached: plain
            case 0:
                ops.add(new Step(2 * r, r, slots(r, low, false), low));
                ops.add(new Step(2 * r + 1, r, slots(r, high, false), high));
                finish = slots(r, range(0, 8), false);
                break;
            case 2:
                ops.add(new Step(2 * r, r, slots(r, low, false), low));
                ops.add(new Move(slots(r, low, false), slots(r, low, true)));
                ops.add(new Step(2 * r + 1, r, slots(r, high, false), high));
                finish = concat(slots(r, low, true), slots(r, high, false));
                break;
            default:
                ops.add(new Step(2 * r, r, slots(r, low, false), low));
                ops.add(new Step(2 * r + 1, r, slots(r, high, false), high));
                int[] a = slots(r, low, false);
                int[] b = slots(r, high, false);
                ops.add(new Move(concat(a, b), concat(b, a)));
                finish = concat(b, a);
        }
        ops.add(new Finish(r, finish));
        if (r % ROUND == ROUND - 1) {
            ops.add(new Clear(r / ROUND + 1));
        }
        return ops;
    }

    private static int[] concat(int[] a, int[] b) {
        int[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    /** The engine event of {@code op}; a step runs its "forward pass" on {@code engine} now. */
    static EngineEvent event(Op op, HostEngine engine) {
        if (op instanceof Admit a) {
            // a prefix hit's first 4 positions are the previous request's rows: declared as cached, as an engine reports it
            return new RequestAdmitted(requestId(a.request()), prefixHit(a.request()) ? 4 : 0);
        }
        if (op instanceof Step s) {
            long[] slots = Arrays.stream(s.slots()).asLongStream().toArray();
            return engine.step(s.stepId(), slots, (t, l, k) -> id(s.request(), s.positions()[t], l, k));
        }
        if (op instanceof Move m) {
            return new SlotsMoved(m.src(), m.dst());
        }
        if (op instanceof Finish f) {
            return new RequestFinished(requestId(f.request()), f.slots());
        }
        return new RoundCleared(((Clear) op).round());
    }

    /** Checks a recorded request position by position against the gate; throws naming the request and position. */
    static void verify(RequestRouting r) {
        long req = request(r.requestId());
        if (r.seqLen() != BLOCK) {
            throw new AssertionError(r.requestId() + ": seqLen " + r.seqLen());
        }
        for (int p = 0; p < BLOCK; p++) {
            for (int l = 0; l < SHAPE.moeLayers(); l++) {
                for (int k = 0; k < SHAPE.topK(); k++) {
                    if (r.id(p, l, k) != id(origin(req, p), p, l, k)) {
                        throw new AssertionError(r.requestId() + " position " + p + " layer " + l + " k " + k + ": " + r.id(p, l, k)
                                + ", expected " + id(origin(req, p), p, l, k));
                    }
                }
            }
        }
    }

    /**
     * What the slot index must hold: for each slot, the (request, position) whose routing it holds, or none. Applies
     * the plan's ops with the documented semantics of steps, moves (all sources read before any destination is
     * written; an unwritten source unwrites its destination) and clears, independently of the sink.
     */
    static final class Oracle {
        final long[] request = new long[SLOTS];
        final int[] position = new int[SLOTS];

        Oracle() {
            Arrays.fill(request, -1);
        }

        void apply(Op op) {
            if (op instanceof Step s) {
                for (int t = 0; t < s.slots().length; t++) {
                    request[s.slots()[t]] = s.request();
                    position[s.slots()[t]] = s.positions()[t];
                }
            } else if (op instanceof Move m) {
                long[] r = new long[m.src().length];
                int[] p = new int[m.src().length];
                for (int i = 0; i < r.length; i++) {
                    r[i] = request[m.src()[i]];
                    p[i] = position[m.src()[i]];
                }
                for (int i = 0; i < r.length; i++) {
                    request[m.dst()[i]] = r[i];
                    position[m.dst()[i]] = p[i];
                }
            } else if (op instanceof Clear) {
                Arrays.fill(request, -1);
            }
        }

        /**
         * The oracle after a fresh store took the plan from request 0 on, up to the recovered state: the store's
         * {@code round} (clears so far, so the plan restarts after the {@code round}th clear) and
         * {@code recordsAfterClear} journal excerpts after it.
         */
        static Oracle recovered(long round, long recordsAfterClear) {
            Oracle o = new Oracle();
            long left = recordsAfterClear;
            for (long r = round * ROUND; left > 0; r++) {
                for (Op op : ops(r)) {
                    if (left == 0) {
                        break;
                    }
                    if (op.journaled()) {
                        o.apply(op);
                        left--;
                    }
                }
            }
            return o;
        }

        /** Journal excerpts the plan writes before request {@code r}. */
        static long recordsBefore(long r) {
            long n = 0;
            for (long q = 0; q < r; q++) {
                n += ops(q).stream().filter(Op::journaled).count();
            }
            return n;
        }

        /**
         * Throws an AssertionError naming the first slot where {@code sink}'s index differs from the oracle; returns
         * how many written slots were compared.
         */
        int check(ChronicleRoutingSink sink) {
            int compared = 0;
            for (int s = 0; s < SLOTS; s++) {
                if (request[s] < 0) {
                    if (sink.read(s).isMissing(0)) {
                        continue;
                    }
                    throw new AssertionError("slot " + s + " holds routing after recovery; the oracle says it is empty");
                }
                RequestRouting row;
                try {
                    row = sink.read(s);
                } catch (IllegalStateException e) {
                    throw new AssertionError("slot " + s + " is empty after recovery; the oracle says it holds request " + request[s]
                            + " position " + position[s], e);
                }
                for (int l = 0; l < SHAPE.moeLayers(); l++) {
                    for (int k = 0; k < SHAPE.topK(); k++) {
                        if (row.id(0, l, k) != id(request[s], position[s], l, k)) {
                            throw new AssertionError("slot " + s + " layer " + l + " k " + k + " holds " + row.id(0, l, k)
                                    + " after recovery; the oracle says request " + request[s] + " position " + position[s] + " = "
                                    + id(request[s], position[s], l, k));
                        }
                    }
                }
                compared++;
            }
            return compared;
        }
    }
}
