package dev.routingreplay.examples.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.cluster.KafkaBroker;
import dev.routingreplay.examples.R3Command;
import dev.routingreplay.sink.ReplayedRequest;
import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.TestStores;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The command line of the cluster against a real broker: {@code r3 serve --announce} as a node (child JVM), and the
 * Python module {@code r3.cluster} (which runs {@code r3 cluster-read --json --ack-stdin}) as a trainer, in two sessions
 * of one group: the first stops after 5 requests, the second gets the rest; each request once, with the stored routing.
 * Skipped, with the reason, where python3 with numpy is missing.
 */
class ClusterCommandsTest {
    @TempDir
    Path dir;

    private static final String SCRIPT = String.join("\n",
            "import json, sys, zlib",
            "sys.path.insert(0, sys.argv[1])",
            "from r3.cluster import ClusterReader, r3_command",
            "n = int(sys.argv[4])",
            "out = []",
            "with ClusterReader(r3_command(), bootstrap=sys.argv[2], group='py', topic=sys.argv[3]) as reader:",
            "    for record in reader:",
            "        out.append({'id': record.announcement['requestId'], 'crc': zlib.crc32(record.routing.tobytes()),",
            "                    'shape': list(record.routing.shape), 'dtype': str(record.routing.dtype)})",
            "        if len(out) == n:",
            "            break",
            "print(json.dumps(out))",
            "");

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void aServedStoreAnnouncedAndReadFromPythonInTwoSessionsOfOneGroup() throws Exception {
        Assumptions.assumeTrue(run(List.of("python3", "-c", "import numpy"), null, 60).startsWith("0:"), "python3 with numpy is missing");
        Path store = dir.resolve("store");
        String[] ids = IntStream.range(0, 12).mapToObj(i -> "q" + i).toArray(String[]::new);
        TestStores.write(StoreConfig.of(store, TestStores.SHAPE, 64).withMinFreeBytes(0), ids);
        Map<String, Long> crcs = new HashMap<>();
        try (RoutingReplay replay = RoutingReplay.open(store)) {
            for (ReplayedRequest r : replay.fromStart().collectList().block(Duration.ofSeconds(30))) {
                java.util.zip.CRC32 crc = new java.util.zip.CRC32();
                ByteBuffer rows = r.routing().rows();
                crc.update(rows);
                crcs.put(r.routing().requestId(), crc.getValue());
            }
        }
        try (KafkaBroker broker = KafkaBroker.start(dir.resolve("broker"))) {
            broker.createTopic("cli", 2);
            int port = KafkaBroker.freePort();
            Path serveOut = dir.resolve("serve.out");
            List<String> serve = new ArrayList<>(java());
            serve.addAll(List.of(R3Command.class.getName(), "serve", "--store", store.toString(), "--port", Integer.toString(port),
                    "--announce", broker.bootstrap(), "--topic", "cli"));
            Process node = new ProcessBuilder(serve).redirectErrorStream(true).redirectOutput(serveOut.toFile()).start();
            try {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (!Files.readString(serveOut).contains("announcing to topic cli") && node.isAlive() && System.nanoTime() < deadline) {
                    Thread.sleep(50);
                }
                assertTrue(Files.readString(serveOut).contains("announcing to topic cli on " + broker.bootstrap() + " as http://127.0.0.1:"
                        + port), Files.readString(serveOut));
                List<Map<String, Object>> first = python(broker, 5);
                List<Map<String, Object>> second = python(broker, 7);
                List<String> all = new ArrayList<>();
                for (Map<String, Object> r : first) {
                    all.add((String) r.get("id"));
                }
                for (Map<String, Object> r : second) {
                    all.add((String) r.get("id"));
                }
                assertEquals(List.of(ids).stream().sorted().collect(Collectors.toList()), all.stream().sorted().collect(Collectors.toList()),
                        "each request once across the two sessions");
                for (List<Map<String, Object>> session : List.of(first, second)) {
                    for (Map<String, Object> r : session) {
                        assertEquals(crcs.get((String) r.get("id")), ((Number) r.get("crc")).longValue(), "routing of " + r.get("id"));
                        assertEquals("uint16", r.get("dtype"));
                    }
                }
            } finally {
                node.destroyForcibly();
                node.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    private List<Map<String, Object>> python(KafkaBroker broker, int n) throws Exception {
        Path python = Path.of(System.getProperty("user.dir")).getParent().resolve("python");
        String out = run(List.of("python3", "-c", SCRIPT, python.toString(), broker.bootstrap(), "cli", Integer.toString(n)),
                Map.of("R3_CLASSPATH", System.getProperty("java.class.path"), "R3_JVM_FLAGS", String.join(" ", flags()),
                        "JAVA", java().get(0)), 120);
        assertTrue(out.startsWith("0:"), out);
        String json = out.substring(2).strip();
        json = json.substring(json.lastIndexOf("\n") + 1);
        return parse(json);
    }

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> parse(String json) {
        // [{"id": "q0", "crc": 123, "shape": [1, 3, 2], "dtype": "uint16"}, ...]: split by objects, read the members we need
        List<Map<String, Object>> out = new ArrayList<>();
        for (String obj : json.replaceAll("^\\[|\\]$", "").split("\\}, \\{|^\\{|\\}$")) {
            if (obj.isBlank()) {
                continue;
            }
            Map<String, Object> m = new HashMap<>();
            java.util.regex.Matcher id = java.util.regex.Pattern.compile("\"id\": \"([^\"]*)\"").matcher(obj);
            java.util.regex.Matcher crc = java.util.regex.Pattern.compile("\"crc\": (\\d+)").matcher(obj);
            java.util.regex.Matcher dtype = java.util.regex.Pattern.compile("\"dtype\": \"([^\"]*)\"").matcher(obj);
            assertTrue(id.find() && crc.find() && dtype.find(), obj);
            m.put("id", id.group(1));
            m.put("crc", Long.parseLong(crc.group(1)));
            m.put("dtype", dtype.group(1));
            out.add(m);
        }
        return out;
    }

    private static List<String> flags() {
        List<String> flags = new ArrayList<>();
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (arg.startsWith("--add-") || arg.startsWith("-Dchronicle")) {
                flags.add(arg);
            }
        }
        return flags;
    }

    private static List<String> java() {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.addAll(flags());
        cmd.addAll(List.of("-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path")));
        return cmd;
    }

    /** Runs {@code cmd}; returns {@code "<exit status>:<output>"}; kills it after {@code seconds}. */
    private String run(List<String> cmd, Map<String, String> env, long seconds) throws IOException, InterruptedException {
        Path out = Files.createTempFile(dir, "run", ".out");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(out.toFile());
        if (env != null) {
            pb.environment().putAll(env);
        }
        Process p = pb.start();
        try {
            if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
                return "timeout:" + Files.readString(out, StandardCharsets.UTF_8);
            }
            return p.exitValue() + ":" + Files.readString(out, StandardCharsets.UTF_8);
        } finally {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
        }
    }

}
