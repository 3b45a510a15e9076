package dev.routingreplay.cluster;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reads and writes the one JSON shape announcements use: a flat object whose values are strings, whole numbers or
 * {@code null} (no nesting, no floats), so any JSON library (Python's {@code json}) reads it and this module needs none.
 * Static and stateless; any thread.
 */
final class FlatJson {
    private FlatJson() {
    }

    /** {@code s} as a JSON string literal, quotes included. */
    static String quote(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 8).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }

    /**
     * The members of a flat JSON object, in order: {@link String}, {@link Long} or null values.
     *
     * @throws IllegalArgumentException naming the position when {@code json} is not such an object
     */
    static Map<String, Object> parse(String json) {
        Parser p = new Parser(json);
        Map<String, Object> out = new LinkedHashMap<>();
        p.skip();
        p.expect('{');
        p.skip();
        if (p.peek() == '}') {
            p.pos++;
        } else {
            while (true) {
                p.skip();
                String name = p.string();
                p.skip();
                p.expect(':');
                p.skip();
                out.put(name, p.value());
                p.skip();
                char c = p.next();
                if (c == '}') {
                    break;
                }
                if (c != ',') {
                    throw p.error("',' or '}'");
                }
            }
        }
        p.skip();
        if (p.pos != json.length()) {
            throw p.error("the end of the object");
        }
        return out;
    }

    private static final class Parser {
        private final String s;
        private int pos;

        Parser(String s) {
            this.s = s;
        }

        char peek() {
            if (pos >= s.length()) {
                throw error("more input");
            }
            return s.charAt(pos);
        }

        char next() {
            char c = peek();
            pos++;
            return c;
        }

        void skip() {
            while (pos < s.length() && Character.isWhitespace(s.charAt(pos))) {
                pos++;
            }
        }

        void expect(char c) {
            if (next() != c) {
                pos--;
                throw error("'" + c + "'");
            }
        }

        Object value() {
            char c = peek();
            if (c == '"') {
                return string();
            }
            if (s.startsWith("null", pos)) {
                pos += 4;
                return null;
            }
            int start = pos;
            if (c == '-') {
                pos++;
            }
            while (pos < s.length() && Character.isDigit(s.charAt(pos))) {
                pos++;
            }
            if (pos == start || (pos == start + 1 && c == '-')) {
                throw error("a string, a whole number or null");
            }
            try {
                return Long.parseLong(s.substring(start, pos));
            } catch (NumberFormatException e) {
                throw error("a whole number that fits 64 bits");
            }
        }

        String string() {
            expect('"');
            StringBuilder sb = new StringBuilder();
            while (true) {
                char c = next();
                if (c == '"') {
                    return sb.toString();
                }
                if (c != '\\') {
                    sb.append(c);
                    continue;
                }
                char e = next();
                switch (e) {
                    case '"': case '\\': case '/': sb.append(e); break;
                    case 'b': sb.append('\b'); break;
                    case 'f': sb.append('\f'); break;
                    case 'n': sb.append('\n'); break;
                    case 'r': sb.append('\r'); break;
                    case 't': sb.append('\t'); break;
                    case 'u':
                        if (pos + 4 > s.length()) {
                            throw error("four hex digits");
                        }
                        try {
                            sb.append((char) Integer.parseInt(s.substring(pos, pos + 4), 16));
                        } catch (NumberFormatException ex) {
                            throw error("four hex digits");
                        }
                        pos += 4;
                        break;
                    default:
                        throw error("an escape");
                }
            }
        }

        IllegalArgumentException error(String wanted) {
            return new IllegalArgumentException("malformed JSON at character " + pos + ": expected " + wanted);
        }
    }
}
