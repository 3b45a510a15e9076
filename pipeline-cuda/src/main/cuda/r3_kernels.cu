// Kernels of the R3 CUDA backend. Compiled to PTX by build-ptx.sh; the PTX is committed as a resource.
// The status offsets and the staging layout must match dev.routingreplay.core.device.RingSlotLayout.
#include <stdint.h>

#define STATUS_BYTES 64
#define INVALID_ID_COUNT 0
#define INVALID_ID_TOKEN 4
#define INVALID_ID_INDEX 8
#define INVALID_ID_VALUE 16
#define INVALID_SLOT_COUNT 24
#define INVALID_SLOT_TOKEN 28
#define INVALID_SLOT_VALUE 32

// Packs engine routing [tokens, idsPerRow] (int32 or int64) and the slot mapping (int32 or int64) into one ring
// slot's staging layout: status header and slot words (both zeroed by the caller), int32 slot words at STATUS_BYTES,
// rows at rowsOffset in the compact dtype (1, 2 or 4 bytes). Same rules as HostPack: an out-of-range slot becomes -1
// (padding) and is counted; padding rows are zero and not checked; an id outside [0, numExperts) is written as 0, is
// counted, and sets DROPPED_ROW in its token's slot word (the whole row is dropped: recorded as missing, never
// stored); one invalid entry of each kind is recorded (whichever thread counted first). The slot words are built
// with atomicOr, so the j == 0 thread and a bad id's thread of the same token may write in either order.
#define DROPPED_ROW 0x80000000u
extern "C" __global__ void r3_pack(const void* __restrict__ routing, int idBytes, const void* __restrict__ slots, int slotBytes,
                                   int tokens, int idsPerRow, int numExperts, int slotCapacity, int dtypeBytes,
                                   unsigned char* __restrict__ staging, int rowsOffset) {
    long long total = (long long) tokens * idsPerRow;
    unsigned char* rows = staging + rowsOffset;
    unsigned int* slotWords = (unsigned int*) (staging + STATUS_BYTES);
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < total; i += (long long) gridDim.x * blockDim.x) {
        int t = (int) (i / idsPerRow);
        int j = (int) (i % idsPerRow);
        long long slot = slotBytes == 4 ? (long long) ((const int*) slots)[t] : ((const long long*) slots)[t];
        bool badSlot = slot < -1 || slot >= slotCapacity;
        if (j == 0) {
            atomicOr(&slotWords[t], badSlot ? 0xFFFFFFFFu : (unsigned int) (int) slot);
            if (badSlot) {
                int before = atomicAdd((int*) (staging + INVALID_SLOT_COUNT), 1);
                if (before == 0) {
                    *(int*) (staging + INVALID_SLOT_TOKEN) = t;
                    *(long long*) (staging + INVALID_SLOT_VALUE) = slot;
                }
            }
        }
        unsigned int out;
        if (badSlot || slot == -1) {
            out = 0;
        } else {
            long long id = idBytes == 4 ? (long long) ((const int*) routing)[i] : ((const long long*) routing)[i];
            if (id < 0 || id >= numExperts) {
                out = 0;
                atomicOr(&slotWords[t], DROPPED_ROW);
                int before = atomicAdd((int*) (staging + INVALID_ID_COUNT), 1);
                if (before == 0) {
                    *(int*) (staging + INVALID_ID_TOKEN) = t;
                    *(int*) (staging + INVALID_ID_INDEX) = j;
                    *(long long*) (staging + INVALID_ID_VALUE) = id;
                }
            } else {
                out = (unsigned int) id;
            }
        }
        if (dtypeBytes == 1) {
            rows[i] = (unsigned char) out;
        } else if (dtypeBytes == 2) {
            ((unsigned short*) rows)[i] = (unsigned short) out;
        } else {
            ((unsigned int*) rows)[i] = out;
        }
    }
}

__device__ __forceinline__ uint32_t r3_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (uint32_t) x;
}

// The synthetic MoE gate: for each (token, layer) one thread draws pseudo-random logits for numExperts experts from
// (seed, token, layer, expert), picks the topK largest (ties to the lower expert id), and writes their ids as int32
// into out[token, layer, k], best first. extraWork adds that many dependent multiply-adds per thread, standing in for
// the rest of a forward pass.
extern "C" __global__ void r3_gate(int* __restrict__ out, int tokens, int layers, int topK, int numExperts,
                                   unsigned long long seed, int extraWork, float* __restrict__ sink) {
    long long n = (long long) tokens * layers;
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x) {
        int t = (int) (i / layers);
        int l = (int) (i % layers);
        uint64_t base = seed * 0x9E3779B97F4A7C15ULL + ((uint64_t) t << 20) + (uint64_t) l * 0x10001ULL;
        uint32_t prevScore = 0xFFFFFFFFu;
        int prevId = -1;
        for (int k = 0; k < topK; k++) {
            uint32_t bestScore = 0;
            int bestId = -1;
            for (int e = 0; e < numExperts; e++) {
                uint32_t s = r3_hash(base + (uint64_t) e * 0xD6E8FEB86659FD93ULL);
                bool belowPrev = s < prevScore || (s == prevScore && e > prevId);
                bool better = bestId < 0 || s > bestScore || (s == bestScore && e < bestId);
                if (belowPrev && better) {
                    bestScore = s;
                    bestId = e;
                }
            }
            out[i * topK + k] = bestId;
            prevScore = bestScore;
            prevId = bestId;
        }
        if (extraWork > 0) {
            float acc = (float) (base & 1023);
            for (int w = 0; w < extraWork; w++) {
                acc = acc * 0.999f + 0.5f;
            }
            if (acc == -1.0f) {
                sink[0] = acc;  // never true; keeps the loop from being optimised away
            }
        }
    }
}

// The examples' deterministic gate (dev.routingreplay.examples.ExpertRouting.mix), so a simulated engine can produce
// its routing on the GPU: out[t, l, k] = (floorMod(mix(keys[t], positions[t], l), numExperts) + k) % numExperts as
// int32, so the top-k of a layer are distinct experts, as a real gate's are; a token with position -1 is padding and
// gets numExperts + 7 (an id the pipeline must skip, never store).
extern "C" __global__ void r3_keyed_routing(int* __restrict__ out, const long long* __restrict__ keys,
                                            const int* __restrict__ positions, int tokens, int layers, int topK,
                                            int numExperts) {
    long long total = (long long) tokens * layers * topK;
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < total; i += (long long) gridDim.x * blockDim.x) {
        int t = (int) (i / ((long long) layers * topK));
        int rest = (int) (i % ((long long) layers * topK));
        int l = rest / topK;
        int k = rest % topK;
        int position = positions[t];
        if (position < 0) {
            out[i] = numExperts + 7;
            continue;
        }
        uint64_t h = (uint64_t) keys[t] + (uint64_t) (long long) position * 0xC2B2AE3D27D4EB4FULL
                + (uint64_t) (long long) l * 0x165667B19E3779F9ULL;
        h ^= h >> 31;
        h *= 0x94D049BB133111EBULL;
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 32;
        long long r = ((long long) h) % numExperts;
        if (r < 0) {
            r += numExperts;
        }
        out[i] = (int) ((r + k) % numExperts);
    }
}
