package dev.routingreplay.examples;

import dev.routingreplay.core.event.SlotsMoved;
import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The simulated engine's paged KV cache: blocks of {@code blockSize} token slots on a GPU tier (blocks
 * {@code [0, gpuBlocks)}) and a host tier (the blocks after), reference counts for blocks that requests share, a prefix
 * cache of the full prompt blocks each prompt wrote (least recently used first out), and swaps of a request's blocks
 * between the tiers. A slot is {@code block * blockSize + position % blockSize}, as in the engines. Engine thread only.
 */
final class KvBlockPool {
    private final EngineConfig cfg;
    private final int[] refcount;
    private final boolean[] cached;
    private final ArrayDeque<Integer> freeGpu = new ArrayDeque<>();
    private final ArrayDeque<Integer> freeHost = new ArrayDeque<>();
    private final LinkedHashMap<Long, int[]> prefixCache = new LinkedHashMap<>(16, 0.75f, true);

    /** A pool with every block of both tiers free and an empty prefix cache. */
    KvBlockPool(EngineConfig cfg) {
        this.cfg = cfg;
        this.refcount = new int[cfg.gpuBlocks()];
        this.cached = new boolean[cfg.gpuBlocks()];
        for (int b = 0; b < cfg.gpuBlocks(); b++) {
            freeGpu.add(b);
        }
        for (int b = 0; b < cfg.hostBlocks(); b++) {
            freeHost.add(cfg.gpuBlocks() + b);
        }
    }

    /** Whether a new request could get a GPU block: one is free, or the prefix cache holds some to evict. */
    boolean hasRoomToAdmit() {
        return freeGpu.size() + prefixCache.size() > 0;
    }

    /** The KV slot of {@code r}'s token at {@code position}. */
    int slotOf(SimulatedRequest r, int position) {
        return r.blocks.get(position / cfg.blockSize()) * cfg.blockSize() + position % cfg.blockSize();
    }

    /**
     * Gives a request that has not started the cached blocks of its prompt (all but the block of its last prompt token)
     * and marks those positions forwarded; returns how many positions it reused (0 on a miss).
     */
    int attachPrefix(SimulatedRequest r) {
        if (!cfg.prefixCaching() || r.forwarded != 0 || !r.blocks.isEmpty()) {
            return 0;
        }
        int[] prefix = prefixCache.get(r.key.prompt());
        if (prefix == null) {
            return 0;
        }
        int usable = Math.min(prefix.length, (r.key.promptLength() - 1) / cfg.blockSize());
        for (int i = 0; i < usable; i++) {
            refcount[prefix[i]]++;
            r.blocks.add(prefix[i]);
        }
        r.forwarded = usable * cfg.blockSize();
        return r.forwarded;
    }

    /** Caches {@code r}'s full prompt blocks once it has forwarded them, unless its prompt is cached already. */
    void registerPrefix(SimulatedRequest r) {
        int full = r.key.promptLength() / cfg.blockSize();
        if (!cfg.prefixCaching() || full == 0 || r.forwarded < full * cfg.blockSize() || prefixCache.containsKey(r.key.prompt())) {
            return;
        }
        int[] blocks = new int[full];
        for (int i = 0; i < full; i++) {
            blocks[i] = r.blocks.get(i);
            cached[blocks[i]] = true;
        }
        prefixCache.put(r.key.prompt(), blocks);
    }

    /** Grows {@code r}'s block table to cover {@code positions}, evicting cached prefixes if needed; false when the GPU tier is full. */
    boolean ensureBlocks(SimulatedRequest r, int positions) {
        while (r.blocks.size() * cfg.blockSize() < positions) {
            if (freeGpu.isEmpty()) {
                evictPrefix();
            }
            if (freeGpu.isEmpty()) {
                return false;
            }
            int b = freeGpu.poll();
            refcount[b] = 1;
            r.blocks.add(b);
        }
        return true;
    }

    private void evictPrefix() {
        Iterator<Map.Entry<Long, int[]>> it = prefixCache.entrySet().iterator();
        while (it.hasNext() && freeGpu.isEmpty()) {
            int[] blocks = it.next().getValue();
            it.remove();
            for (int b : blocks) {
                cached[b] = false;
                if (refcount[b] == 0) {
                    freeGpu.add(b);
                }
            }
        }
    }

    /** Gives up {@code r}'s blocks (a shared or cached block stays for its other users) and empties its block table. */
    void release(SimulatedRequest r) {
        for (int b : r.blocks) {
            if (b >= cfg.gpuBlocks()) {
                freeHost.add(b);
            } else if (--refcount[b] == 0 && !cached[b]) {
                freeGpu.add(b);
            }
        }
        r.blocks.clear();
    }

    /** Whether {@code r}'s blocks could be swapped out: it has some, and the host tier has as many free. */
    boolean canSwapOut(SimulatedRequest r) {
        return !r.blocks.isEmpty() && freeHost.size() >= r.blocks.size();
    }

    /** Moves {@code r}'s blocks to the host tier ({@link #canSwapOut} must hold); returns the engine's move event. */
    SlotsMoved swapOut(SimulatedRequest r) {
        return moveBlocks(r, freeHost);
    }

    /** Moves {@code r}'s blocks back to the GPU tier, evicting cached prefixes if needed; null when they do not fit. */
    SlotsMoved swapIn(SimulatedRequest r) {
        if (freeGpu.size() < r.blocks.size()) {
            evictPrefix();
        }
        return freeGpu.size() >= r.blocks.size() ? moveBlocks(r, freeGpu) : null;
    }

    private SlotsMoved moveBlocks(SimulatedRequest r, ArrayDeque<Integer> into) {
        int bs = cfg.blockSize();
        int n = r.blocks.size() * bs;
        int[] src = new int[n];
        int[] dst = new int[n];
        for (int i = 0; i < r.blocks.size(); i++) {
            int from = r.blocks.get(i);
            int to = into.poll();
            for (int j = 0; j < bs; j++) {
                src[i * bs + j] = from * bs + j;
                dst[i * bs + j] = to * bs + j;
            }
            r.blocks.set(i, to);
            // a block shared with other requests or the prefix cache is copied, not given up: it stays for them
            if (from >= cfg.gpuBlocks()) {
                freeHost.add(from);
            } else if (--refcount[from] == 0 && !cached[from]) {
                freeGpu.add(from);
            }
            if (to < cfg.gpuBlocks()) {
                refcount[to] = 1;
            }
        }
        return new SlotsMoved(src, dst);
    }

    /** Empties the prefix cache (a round ended: the next round's prompts are new); cached blocks no request holds are freed. */
    void clearPrefixCache() {
        for (int[] blocks : prefixCache.values()) {
            for (int b : blocks) {
                cached[b] = false;
                if (refcount[b] == 0) {
                    freeGpu.add(b);
                }
            }
        }
        prefixCache.clear();
    }
}
