package dev.routingreplay.core.event;

/**
 * End of an RL round: every slot's routing is dropped (a later gather of it fails rather than returning stale
 * rows) and no request stays live.
 *
 * @param round a label for the round that ended, for logs
 */
public record RoundCleared(long round) implements EngineEvent {
    @Override
    public String describe() {
        return "clear of round " + round;
    }
}
