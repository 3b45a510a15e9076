package dev.routingreplay.sink;

import io.netty.handler.codec.http.QueryStringDecoder;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The decoded path and query parameters of a request URI (Netty's decoder); the first value of each name. */
final class QueryParams {
    private final String path;
    private final String rawPath;
    private final Map<String, List<String>> params;

    private QueryParams(String path, String rawPath, Map<String, List<String>> params) {
        this.path = path;
        this.rawPath = rawPath;
        this.params = params;
    }

    static QueryParams of(String uri) {
        QueryStringDecoder decoder = new QueryStringDecoder(uri);
        return new QueryParams(decoder.path(), decoder.rawPath(), decoder.parameters());
    }

    /** The path as sent, percent-encoded, without the query (a request id's segment is decoded from it). */
    String rawPath() {
        return rawPath;
    }

    /** The names of the parameters given. */
    Set<String> names() {
        return params.keySet();
    }

    /** How many times the parameter {@code name} was given. */
    int count(String name) {
        List<String> values = params.get(name);
        return values == null ? 0 : values.size();
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
