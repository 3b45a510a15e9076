package dev.routingreplay.core.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class NativeOwnerGuardTest {
    @Test
    void closeWaitsForTheRunningUseAndLaterUsesAreRefused() throws Exception {
        NativeOwnerGuard guard = new NativeOwnerGuard("slot store of 8 slots");
        guard.enter("scatter");
        CompletableFuture<Boolean> closing = CompletableFuture.supplyAsync(guard::close);
        Thread.sleep(30);
        assertFalse(closing.isDone(), "close waits while a use runs");
        assertFalse(guard.isClosed());
        guard.exit();
        assertTrue(closing.get(5, TimeUnit.SECONDS), "the waiting close is the one that closed");
        assertFalse(guard.close(), "a second close does nothing");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> guard.enter("gather"));
        assertEquals("slot store of 8 slots is closed; gather refused", e.getMessage());
    }

    @Test
    void aSecondThreadIsRefusedWhileAUseRuns() throws Exception {
        NativeOwnerGuard guard = new NativeOwnerGuard("ring");
        guard.enter("a");
        Throwable other = CompletableFuture.supplyAsync(() -> {
            try {
                guard.enter("b");
                return null;
            } catch (IllegalStateException e) {
                return (Throwable) e;
            }
        }).get(5, TimeUnit.SECONDS);
        assertTrue(other.getMessage().contains("in use by another thread"), other.getMessage());
        guard.exit();
        guard.enter("c");
        guard.exit();
    }
}
