package dev.routingreplay.examples.cluster;

import reactor.blockhound.BlockHound;
import reactor.blockhound.integration.BlockHoundIntegration;

/**
 * Lets BlockHound pass one wait inside Netty itself: Netty 4.2's adaptive buffer allocator takes a {@code StampedLock}
 * for a few instructions when it grows its magazines, on the event loop that reads a response. That is Netty's own
 * allocator, not a call of ours; every other blocking call on a non-blocking thread still fails the tests. Found by
 * {@link MultiNodeClusterTest} (a reader's fetch failed with {@code BlockingOperationError ... Unsafe#park} under
 * {@code AdaptivePoolingAllocator$MagazineGroup.tryExpandMagazines}). Loaded by BlockHound through
 * {@code META-INF/services}.
 */
public final class NettyAllocatorBlockHound implements BlockHoundIntegration {
    @Override
    public void applyTo(BlockHound.Builder builder) {
        builder.allowBlockingCallsInside("io.netty.buffer.AdaptivePoolingAllocator$MagazineGroup", "tryExpandMagazines");
    }
}
