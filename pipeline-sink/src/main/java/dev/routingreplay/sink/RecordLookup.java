package dev.routingreplay.sink;

import dev.routingreplay.sink.HttpReplies.Rejection;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.util.Locale;
import reactor.core.publisher.Mono;

/**
 * Finds the record a route names (by ordinal, Chronicle index or request id) in the store and its index, or says why
 * there is none (404, 410 for what retention deleted, 500 for a damaged record). Runs on the replay's reader threads.
 */
final class RecordLookup {
    static final String NPY = ".npy";
    static final String ROUTES = "/requests/<ordinal>.npy, /requests/by-id/<url-encoded request id>.npy or "
            + "/requests/index/<hex index>.npy";

    private final RoutingReplay replay;
    private final RequestIndex index;

    RecordLookup(RoutingReplay replay, RequestIndex index) {
        this.replay = replay;
        this.index = index;
    }

    /** A record found for an address, with its ordinal. */
    record Found(RoutingReplay.Stored stored, long ordinal) {
    }

    /** A record found, or why not. */
    record Resolved(Found found, Rejection rejection) {
        static Resolved of(Rejection r) {
            return new Resolved(null, r);
        }
    }

    /** How a {@code .npy} route names its record: an ordinal, a Chronicle index or a request id. */
    record Address(Kind kind, long number, String id, String bad) {
        enum Kind { ORDINAL, INDEX, ID }

        static Address bad(String message) {
            return new Address(null, -1, null, message);
        }

        static Address parseOrdinal(String file) {
            if (!file.toLowerCase(Locale.ROOT).endsWith(NPY)) {
                return bad("404 no such resource /requests/" + file + " (want " + ROUTES + ")");
            }
            String stem = file.substring(0, file.length() - NPY.length());
            if (!stem.matches("[0-9]{1,18}")) {
                return bad("400 bad ordinal '" + stem + "' in /requests/" + file + ": want /requests/<ordinal>.npy with the ordinal a whole "
                        + "number 0 or more (the ordinal field of /requests; a hex index goes to /requests/index/<hex>.npy, a "
                        + "request id to /requests/by-id/<url-encoded id>.npy)");
            }
            return new Address(Kind.ORDINAL, Long.parseLong(stem), null, null);
        }

        static Address parseIndex(String file) {
            if (!file.toLowerCase(Locale.ROOT).endsWith(NPY)) {
                return bad("404 no such resource /requests/index/" + file + " (want /requests/index/<hex index>.npy)");
            }
            String hex = file.substring(0, file.length() - NPY.length());
            long at = HttpReplies.parseHex(hex);
            if (at < 0) {
                return bad("400 bad index '" + hex + "' in /requests/index/" + file + ": want /requests/index/<hex index>.npy "
                        + "(1 to 16 hex digits, the index field of /requests)");
            }
            return new Address(Kind.INDEX, at, null, null);
        }

        static Address parseId(String rawFile) {
            if (!rawFile.endsWith(NPY) || rawFile.length() == NPY.length()) {
                return bad("404 no such resource /requests/by-id/" + rawFile + " (want /requests/by-id/<url-encoded request id>.npy)");
            }
            String encoded = rawFile.substring(0, rawFile.length() - NPY.length());
            String id = PathSegments.decode(encoded);
            if (id == null) {
                return bad("400 bad request id '" + encoded + "' in /requests/by-id/: want the id percent-encoded as UTF-8 "
                        + "(%XX for every byte outside A-Z a-z 0-9 - . _ ~), e.g. urllib.parse.quote(id, safe='')");
            }
            return new Address(Kind.ID, -1, id, null);
        }

        String describe() {
            switch (kind) {
                case ORDINAL:
                    return "ordinal " + number;
                case INDEX:
                    return "index " + Long.toHexString(number);
                default:
                    return "request id '" + id + "'";
            }
        }
    }

    /** Finds the record of {@code address} (on a replay reader's thread). */
    Resolved resolve(Address address) {
        try {
            switch (address.kind()) {
                case ORDINAL:
                    return byOrdinal(address.number());
                case INDEX:
                    RoutingReplay.Stored s = replay.readAt(address.number());
                    return s == null ? Resolved.of(unknownIndexNow("index", address.number()))
                            : new Resolved(new Found(s, index.ordinalOf(s.index())), null);
                default:
                    return byId(address.id());
            }
        } catch (StoreException e) {
            return Resolved.of(new Rejection(HttpResponseStatus.INTERNAL_SERVER_ERROR, address.describe() + ": the stored record is damaged, "
                    + "nothing of it is served: " + e.problem()));
        }
    }

    Resolved byOrdinal(long ordinal) {
        RequestIndex.Found f = index.byOrdinal(ordinal);
        if (f.where() == RequestIndex.Where.STORED) {
            RoutingReplay.Stored s = replay.readAt(f.index());
            if (s != null) {
                return new Resolved(new Found(s, ordinal), null);
            }
            index.refreshNow();
            f = RequestIndex.Found.DELETED;
        }
        long first = index.firstOrdinal();
        long last = index.lastOrdinal();
        if (f.where() == RequestIndex.Where.DELETED) {
            return Resolved.of(new Rejection(HttpResponseStatus.GONE, "ordinal " + ordinal + ": no record: it lies before the first record "
                    + "still stored, ordinal " + first + " (deleted by retention)"));
        }
        return Resolved.of(new Rejection(HttpResponseStatus.NOT_FOUND, "ordinal " + ordinal + ": no record with that ordinal ("
                + (last < 0 ? "the store holds no record yet" : "the store holds ordinals " + first + " to " + last) + ")"));
    }

    Resolved byId(String id) {
        boolean deleted = false;
        for (long ordinal : index.byId(id)) {
            RequestIndex.Found f = index.byOrdinal(ordinal);
            if (f.where() != RequestIndex.Where.STORED) {
                deleted |= f.where() == RequestIndex.Where.DELETED;
                continue;
            }
            RoutingReplay.Stored s = replay.readAt(f.index());
            if (s == null) {
                deleted = true;
            } else if (s.header().requestId().equals(id)) {
                return new Resolved(new Found(s, ordinal), null);
            }
        }
        String shown = HttpReplies.jsonEscape(id);
        if (deleted) {
            return Resolved.of(new Rejection(HttpResponseStatus.GONE, "request id '" + shown + "': no record stored: its records were "
                    + "deleted by retention"));
        }
        return Resolved.of(new Rejection(HttpResponseStatus.NOT_FOUND, "request id '" + shown + "': no record with that id"));
    }

    /** Why {@code index} (named by {@code parameter}) has no record: 410 below the first record still present, else 404. */
    Mono<Rejection> unknownIndex(String parameter, long index) {
        return Mono.fromCallable(() -> unknownIndexNow(parameter, index)).subscribeOn(ReplayCursor.READERS);
    }

    Rejection unknownIndexNow(String parameter, long at) {
        String hex = Long.toHexString(at);
        long first = -1;
        try (var tailer = replay.queue().createTailer()) {
            tailer.toStart();
            try (var dc = tailer.readingDocument()) {
                if (dc.isPresent()) {
                    first = dc.index();
                    dc.rollbackOnClose();
                }
            }
        }
        if (first >= 0 && at < first) {
            return new Rejection(HttpResponseStatus.GONE, parameter + "=" + hex + ": no record at that index: it lies before the first "
                    + "record still stored, " + Long.toHexString(first) + " (deleted by retention, or never written)");
        }
        return new Rejection(HttpResponseStatus.NOT_FOUND, parameter + "=" + hex + ": no record at that index");
    }

    /** The ordinal of the newest record with id {@code id} newer than {@code ordinal}, or -1 (reads only hash matches). */
    long supersededBy(String id, long ordinal) {
        for (long candidate : index.byId(id)) {
            if (candidate <= ordinal) {
                return -1;
            }
            RequestIndex.Found f = index.byOrdinal(candidate);
            if (f.where() == RequestIndex.Where.STORED) {
                RoutingReplay.Stored s = replay.readAt(f.index());
                if (s != null && s.header().requestId().equals(id)) {
                    return candidate;
                }
            }
        }
        return -1;
    }
}
