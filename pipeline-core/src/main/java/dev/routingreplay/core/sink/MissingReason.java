package dev.routingreplay.core.sink;

/**
 * Why a position of a finished request is a missing row instead of data (docs/contract.md). A row is data only when
 * the store can vouch for it: written in the current round, by a step after the request's admission (or inside the
 * cached prefix the admission declared), not gathered since by another request's finish as a row that request computed,
 * with every id in range and no expert twice in a layer. Every other row is
 * missing with one of these reasons, stored with the record and served to trainers; the wire code never changes.
 */
public enum MissingReason {
    /** No step ever wrote the position's slot (or a move emptied it). */
    NEVER_WRITTEN(1, "never-written"),
    /** The slot was written in an earlier round, before the last round clear. */
    STALE_ROUND(2, "stale-round"),
    /** The slot was written before the request was admitted, and the position lies past the declared cached prefix. */
    BEFORE_ADMISSION(3, "before-admission"),
    /** The step that wrote the slot carried an expert id outside {@code [0, numExperts)} in this token's row. */
    INVALID_ID(4, "invalid-id"),
    /** The step that wrote the slot carried one expert twice in one layer of this token's row. */
    DUPLICATE_EXPERT(5, "duplicate-expert"),
    /** The finish named a slot outside {@code [0, slotCapacity)} for the position. */
    BAD_SLOT(6, "bad-slot"),
    /**
     * The slot's row belongs to another request: that request's finish already gathered it at a position it computed
     * (past its cached prefix), and no step wrote the slot since, so this request's own write of the position never
     * arrived (a slot mapping entry out of range, a block table pointing at a freed block).
     */
    REUSED_SLOT(7, "reused-slot");

    private static final MissingReason[] BY_CODE = new MissingReason[8];

    static {
        for (MissingReason r : values()) {
            BY_CODE[r.code] = r;
        }
    }

    private final byte code;
    private final String label;

    MissingReason(int code, String label) {
        this.code = (byte) code;
        this.label = label;
    }

    /** The stored and wire code, 1 to 7; 0 means "not missing" wherever a code is stored per position. */
    public byte code() {
        return code;
    }

    /** The name used in listings, headers, metrics and the Python client, e.g. {@code never-written}. */
    public String label() {
        return label;
    }

    /**
     * The reason of {@code code}.
     *
     * @throws IllegalArgumentException naming the code when it is none of the reasons
     */
    public static MissingReason ofCode(int code) {
        if (code <= 0 || code >= BY_CODE.length) {
            throw new IllegalArgumentException("missing-row reason code " + code + " is not one of 1.." + (BY_CODE.length - 1));
        }
        return BY_CODE[code];
    }

    @Override
    public String toString() {
        return label;
    }
}
