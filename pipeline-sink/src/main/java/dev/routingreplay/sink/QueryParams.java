package dev.routingreplay.sink;

import io.netty.handler.codec.http.QueryStringDecoder;
import java.util.List;
import java.util.Map;

/** The query parameters of a request URI (Netty's decoder); the first value of each name. */
final class QueryParams {
    private final Map<String, List<String>> params;

    private QueryParams(Map<String, List<String>> params) {
        this.params = params;
    }

    static QueryParams of(String uri) {
        return new QueryParams(new QueryStringDecoder(uri).parameters());
    }

    String get(String name) {
        List<String> values = params.get(name);
        return values == null || values.isEmpty() ? null : values.get(0);
    }
}
