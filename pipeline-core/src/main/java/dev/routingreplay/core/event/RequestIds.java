package dev.routingreplay.core.event;

final class RequestIds {
    private RequestIds() {
    }

    static void check(String requestId) {
        if (requestId == null || requestId.isEmpty()) {
            throw new IllegalArgumentException("requestId must not be null or empty, was " + (requestId == null ? "null" : "\"\""));
        }
    }
}
