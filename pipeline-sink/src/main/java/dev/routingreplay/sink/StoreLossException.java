package dev.routingreplay.sink;

import java.nio.file.Path;
import java.util.List;

/**
 * Records the writer had acknowledged are gone, not by retention: a request file missing (deleted by hand, a partial
 * copy) or a queue that ends before its checkpoint. A finite replay signals it after every record still stored, so a
 * reader sees both what is there and what was lost; {@link #losses()} holds one line per loss naming the file and the
 * ordinals (and indexes) it held.
 */
public final class StoreLossException extends StoreException {
    private static final long serialVersionUID = 1L;
    private final List<String> losses;

    /** The losses of the request queue at {@code queue}, one line each. */
    StoreLossException(Path queue, List<String> losses) {
        super(queue, "records were lost (not by retention): " + String.join("; ", losses));
        this.losses = List.copyOf(losses);
    }

    /** One line per loss. */
    public List<String> losses() {
        return losses;
    }
}
