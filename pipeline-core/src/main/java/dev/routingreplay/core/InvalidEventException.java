package dev.routingreplay.core;

/**
 * Bad input from the engine: a field of an event (or of the data a capture step points at) holds a value the
 * pipeline cannot accept. The message names the event, the field and the value. Thrown before any effect of the
 * offending event is applied, so other requests' data stay intact.
 */
public class InvalidEventException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /** Creates the exception with a message naming the field and its value. */
    public InvalidEventException(String message) {
        super(message);
    }
}
