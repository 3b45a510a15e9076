package dev.routingreplay.sink;

/**
 * What a store takes on disk and what retention deleted since it was opened (see {@link ChronicleRoutingSink#usage}).
 *
 * @param journalBytes bytes of the journal's files (allocated, as {@code du} counts them)
 * @param requestBytes bytes of the request queue's files
 * @param maxRequestBytes the request queue's size limit in force ({@link StoreConfig#maxRequestBytes}, resolved)
 * @param deletedByAge request files deleted because they were older than {@link StoreConfig#maxAge}
 * @param deletedBySize request files deleted to keep the request queue under {@code maxRequestBytes}
 * @param deletedByReaders request files deleted because every named reader had read past them
 * @param recordsDeleted request records in the deleted request files
 */
public record StoreUsage(long journalBytes, long requestBytes, long maxRequestBytes, long deletedByAge, long deletedBySize,
        long deletedByReaders, long recordsDeleted) {

    /** Request files deleted by retention, for any reason. */
    public long filesDeleted() {
        return deletedByAge + deletedBySize + deletedByReaders;
    }

    /** One line for logs and summaries. */
    public String describe() {
        return String.format("store %.1f MB (journal %.1f MB, requests %.1f MB of %.1f MB allowed); retention deleted %d request files "
                + "(%d by age, %d by size, %d read by every named reader) holding %d records", (journalBytes + requestBytes) / 1e6,
                journalBytes / 1e6, requestBytes / 1e6, maxRequestBytes / 1e6, filesDeleted(), deletedByAge, deletedBySize,
                deletedByReaders, recordsDeleted);
    }
}
