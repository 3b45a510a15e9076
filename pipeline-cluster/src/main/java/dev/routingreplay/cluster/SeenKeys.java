package dev.routingreplay.cluster;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The {@link Announcement#dedupKey() dedup keys} a reader has handed downstream (or learnt were handed by the group
 * before it), the most recent {@code capacity} of them: the oldest is forgotten first. One reader thread only.
 */
final class SeenKeys {
    private final LinkedHashMap<String, Boolean> keys;

    /** Remembers at most {@code capacity} keys (1 or more). */
    SeenKeys(int capacity) {
        if (capacity < 1) {
            throw new IllegalArgumentException("dedup capacity must be at least 1, was " + capacity);
        }
        this.keys = new LinkedHashMap<>(16, 0.75f, false) {
            private static final long serialVersionUID = 1L;

            @Override
            protected boolean removeEldestEntry(Map.Entry<String, Boolean> eldest) {
                return size() > capacity;
            }
        };
    }

    /** Whether {@code key} was seen. */
    boolean contains(String key) {
        return keys.containsKey(key);
    }

    /** Remembers {@code key}. */
    void add(String key) {
        keys.put(key, Boolean.TRUE);
    }

    /** Keys remembered now. */
    int size() {
        return keys.size();
    }
}
