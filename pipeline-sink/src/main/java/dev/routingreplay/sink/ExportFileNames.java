package dev.routingreplay.sink;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.Set;

/**
 * Safe, unique file names for request ids inside one output folder. A name keeps only {@code [A-Za-z0-9._-]}, never
 * starts with a dot, is at most about 120 characters, and carries a hash of the id whenever it had to change, so two
 * ids never share a file and no id can name a path outside the folder.
 */
final class ExportFileNames {
    private final Path folder;
    private final Set<String> used = new HashSet<>();

    ExportFileNames(Path folder) {
        this.folder = folder.toAbsolutePath().normalize();
    }

    /** The file for {@code requestId} (with {@code suffix}), unique among the names handed out so far. */
    Path fileFor(String requestId, String suffix) {
        StringBuilder sb = new StringBuilder(requestId.length());
        for (int i = 0; i < requestId.length(); i++) {
            char c = requestId.charAt(i);
            boolean ok = c < 128 && (Character.isLetterOrDigit(c) || c == '.' || c == '_' || c == '-');
            sb.append(ok ? c : '_');
        }
        if (sb.length() == 0 || sb.charAt(0) == '.') {
            sb.insert(0, '_');
        }
        String name = sb.toString();
        if (!name.equals(requestId) || name.length() > 120) {
            name = name.substring(0, Math.min(name.length(), 100)) + "-" + hash(requestId);
        }
        String unique = name;
        for (int n = 2; !used.add(unique); n++) {
            unique = name + "~" + n;
        }
        Path file = folder.resolve(unique + suffix).normalize();
        if (!folder.equals(file.getParent())) {
            throw new IllegalStateException("file name for request id '" + requestId + "' escapes " + folder);
        }
        return file;
    }

    private static String hash(String id) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(id.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(d, 0, 6);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
