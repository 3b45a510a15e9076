package dev.routingreplay.core.event;

/**
 * End of an RL round: every slot's routing becomes stale (a later gather reports it as a missing row, reason
 * {@code stale-round}, never as data) and no request stays live.
 *
 * @param round a label for the round that ended, for logs
 */
public record RoundCleared(long round) implements EngineEvent {
    @Override
    public String describe() {
        return "clear of round " + round;
    }
}
