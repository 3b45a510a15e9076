package dev.routingreplay.sink;

import io.netty.handler.codec.http.QueryStringDecoder;
import java.util.List;
import java.util.Map;

/** The decoded path and query parameters of a request URI (Netty's decoder); the first value of each name. */
final class QueryParams {
    private final String path;
    private final Map<String, List<String>> params;

    private QueryParams(String path, Map<String, List<String>> params) {
        this.path = path;
        this.params = params;
    }

    static QueryParams of(String uri) {
        QueryStringDecoder decoder = new QueryStringDecoder(uri);
        return new QueryParams(decoder.path(), decoder.parameters());
    }

    /** The decoded path, without the query. */
    String path() {
        return path;
    }

    /** The first value of the parameter {@code name}, or null when absent. */
    String get(String name) {
        List<String> values = params.get(name);
        return values == null || values.isEmpty() ? null : values.get(0);
    }
}
