package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Every module's main code logs through SLF4J: no {@code System.Logger}, no {@code java.util.logging}. (Which
 * backend, if any, is the application's choice: only the CLI module declares one.)
 */
class OneLoggingApiTest {
    @Test
    void noMainSourceUsesAnotherLoggingApi() throws IOException {
        Path root = Path.of("").toAbsolutePath().getParent(); // surefire runs in the module's folder
        List<Path> sources;
        try (Stream<Path> modules = Files.list(root)) {
            sources = modules.map(m -> m.resolve("src/main/java")).filter(Files::isDirectory).flatMap(OneLoggingApiTest::javaFiles)
                    .collect(Collectors.toList());
        }
        assertTrue(sources.size() > 50, "the modules' main sources were found under " + root + ": " + sources.size());
        List<String> offenders = sources.stream().filter(OneLoggingApiTest::usesAnotherLoggingApi).map(root::relativize).map(Path::toString)
                .sorted().collect(Collectors.toList());
        assertEquals(List.of(), offenders, "main sources that log through System.Logger or java.util.logging, not SLF4J");
    }

    private static Stream<Path> javaFiles(Path dir) {
        try (Stream<Path> files = Files.walk(dir)) {
            return files.filter(f -> f.toString().endsWith(".java")).collect(Collectors.toList()).stream();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static boolean usesAnotherLoggingApi(Path file) {
        try {
            String text = Files.readString(file);
            return text.contains("System.getLogger(") || text.contains("System.Logger") || text.contains("import java.util.logging");
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
