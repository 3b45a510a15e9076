package dev.routingreplay.examples.cli;

import dev.routingreplay.cluster.AnnouncementKey;
import dev.routingreplay.cluster.Announcer;
import dev.routingreplay.sink.ReplayServer;
import dev.routingreplay.sink.StoreException;
import java.io.IOException;
import java.net.BindException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.KafkaException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import reactor.netty.ChannelBindException;

/**
 * {@code r3 serve}: serves a store's requests over HTTP ({@link ReplayServer}) until interrupted. Options are checked
 * before the store is opened; a missing store exits with {@link ExitStatus#STORE}, a port in use with
 * {@link ExitStatus#UNAVAILABLE}, an unreadable or malformed token file with {@link ExitStatus#USAGE} (naming the file,
 * never the token).
 *
 * <p>With {@code --announce BOOTSTRAP} it also announces every durable request record of the store on a Kafka topic
 * ({@link Announcer}, at least once, resuming after the last record known to be announced) with this server's URL, for
 * trainers that read the cluster ({@code r3 cluster-read}); Kafka unreachable for good stops the command with
 * {@link ExitStatus#UNAVAILABLE}.
 *
 * <p>A bearer token comes from {@code --token-file} (its first line, surrounding blanks stripped) or, without it, from
 * the environment variable {@value #TOKEN_ENV}; with one, every route but {@code /health} needs
 * {@code Authorization: Bearer <token>}. The token is never printed.
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve a routing store over HTTP: /health, /manifest, /requests (NDJSON, ?after=&limit=&follow=true), "
                + "/requests/<ordinal>.npy, /requests/by-id/<id>.npy, /requests/index/<hex>.npy (?start=&layers=&drop_last=&dtype=)")
public final class ServeCommand implements Callable<Integer> {
    /** The environment variable a bearer token is taken from when {@code --token-file} is absent. */
    public static final String TOKEN_ENV = "R3_TOKEN";
    /** RFC 6750's token characters. */
    private static final String TOKEN_PATTERN = "[A-Za-z0-9._~+/-]+=*";

    @Spec
    CommandSpec spec;

    @Mixin
    VerboseOption verbose;

    @Option(names = "--store", required = true, description = "The store folder.")
    Path store;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to listen on (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8787", description = "Port, 0 to 65535 (default: ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Option(names = "--idle-timeout-ms", defaultValue = "30000",
            description = "Close a connection whose request has not arrived this long after it opened or after the last response, "
                    + "100 to 3600000 (default: ${DEFAULT-VALUE}).")
    long idleTimeoutMs;

    @Option(names = "--max-followers", defaultValue = "256",
            description = "Most live ?follow=true listings at once, 0 to 100000; more get 503 (default: ${DEFAULT-VALUE}).")
    int maxFollowers;

    @Option(names = "--token-file", description = "Require Authorization: Bearer <token> on every route but /health, the token "
            + "being this file's first line (default: the environment variable " + TOKEN_ENV + " if set, else no token).")
    Path tokenFile;

    @Option(names = "--announce", paramLabel = "BOOTSTRAP", description = "Announce every durable request record on Kafka (brokers "
            + "host:port[,...]) for trainers reading the cluster (r3 cluster-read); the payload stays here.")
    String announce;

    @Option(names = "--topic", defaultValue = "r3-requests", description = "Topic of the announcements (default: ${DEFAULT-VALUE}).")
    String topic;

    @Option(names = "--announce-url", description = "This server's URL as trainers reach it (default: http://<host>:<port>; needed when "
            + "--host is a wildcard address).")
    String announceUrl;

    @Option(names = "--announce-key", defaultValue = "request-id", description = "Kafka key of an announcement: request-id, or "
            + "group:<regex> whose first group of the request id is the key, e.g. 'group:^(p\\d+)-' (default: ${DEFAULT-VALUE}).")
    String announceKey;

    /** The environment the token variable is read from (a test seam). */
    java.util.function.Function<String, String> environment = System::getenv;

    /** Serves until the process is stopped; returns {@link ExitStatus#OK} then. */
    @Override
    public Integer call() throws InterruptedException {
        if (port < 0 || port > 65535) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--port': " + port + " is not in 0..65535");
        }
        if (idleTimeoutMs < 100 || idleTimeoutMs > 3_600_000) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--idle-timeout-ms': " + idleTimeoutMs
                    + " is not in 100..3600000");
        }
        if (maxFollowers < 0 || maxFollowers > 100_000) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--max-followers': " + maxFollowers
                    + " is not in 0..100000");
        }
        if (host.isBlank()) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--host': '" + host + "' is blank");
        }
        AnnouncementKey key = announceKey();
        String token = token();
        String auth = token == null ? "no token" : "bearer token from " + (tokenFile != null ? "--token-file" : TOKEN_ENV);
        CountDownLatch stop = new CountDownLatch(1);
        AtomicReference<Throwable> announceFailure = new AtomicReference<>();
        try (ReplayServer server = start(token); Announcer announcer = announce(key, server.port())) {
            Runtime.getRuntime().addShutdownHook(new Thread(stop::countDown, "r3-serve-stop"));
            spec.commandLine().getOut().printf("serving %s on http://%s:%d/requests (%s; Ctrl-C stops)%n", store, host, server.port(), auth);
            if (announcer != null) {
                announcer.stopped().subscribe(null, e -> {
                    announceFailure.set(e);
                    stop.countDown();
                });
                spec.commandLine().getOut().printf("announcing to topic %s on %s as %s%n", topic, announce, nodeUrl(server.port()));
            }
            spec.commandLine().getOut().flush();
            stop.await();
        }
        Throwable failed = announceFailure.get();
        if (failed != null) {
            throw new CommandException(ExitStatus.UNAVAILABLE, "--announce " + announce + ": " + failed.getMessage(), failed);
        }
        return ExitStatus.OK.code();
    }

    /** The announcement key of --announce-key; a bad one is a usage error. */
    private AnnouncementKey announceKey() {
        if (announce == null) {
            return null;
        }
        if (announce.isBlank()) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--announce': it is blank");
        }
        try {
            Announcer.readerName(topic);
            if (announceUrl == null && (host.equals("0.0.0.0") || host.equals("::") || host.equals("[::]"))) {
                throw new IllegalArgumentException("--host " + host + " is a wildcard address: pass --announce-url with the URL trainers reach");
            }
            return AnnouncementKey.parse(announceKey);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), "Invalid announcement option: " + e.getMessage());
        }
    }

    private String nodeUrl(int boundPort) {
        return announceUrl != null ? announceUrl : "http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + boundPort;
    }

    /** The announcer of --announce, or null without it. */
    private Announcer announce(AnnouncementKey key, int boundPort) {
        if (announce == null) {
            return null;
        }
        try {
            return Announcer.start(new Announcer.Config(store, nodeUrl(boundPort), topic, key,
                    Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, announce), 1024));
        } catch (KafkaException e) {
            throw new CommandException(ExitStatus.UNAVAILABLE, "--announce " + announce + ": " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), "Invalid announcement option: " + e.getMessage());
        }
    }

    /** The token of --token-file, else of the environment, else null; a bad one is a usage error naming its source. */
    private String token() {
        String source;
        String token;
        if (tokenFile != null) {
            source = "--token-file " + tokenFile;
            try {
                token = Files.readString(tokenFile, StandardCharsets.UTF_8).lines().findFirst().orElse("").strip();
            } catch (IOException | RuntimeException e) {
                throw new ParameterException(spec.commandLine(), "Invalid value for option '--token-file': cannot read " + tokenFile + ": "
                        + e.getClass().getSimpleName());
            }
        } else {
            token = environment.apply(TOKEN_ENV);
            if (token == null) {
                return null;
            }
            source = "the environment variable " + TOKEN_ENV;
            token = token.strip();
        }
        if (!token.matches(TOKEN_PATTERN)) {
            throw new ParameterException(spec.commandLine(), "Invalid bearer token in " + source + ": "
                    + (token.isEmpty() ? "it is empty" : "want 1 or more of A-Z a-z 0-9 - . _ ~ + / (then = padding), " + token.length()
                            + " characters given (not shown)"));
        }
        return token;
    }

    private ReplayServer start(String token) {
        try {
            return ReplayServer.start(store, host, port, new ReplayServer.Limits(Duration.ofMillis(idleTimeoutMs), maxFollowers), token);
        } catch (StoreException e) {
            throw e;
        } catch (RuntimeException e) {
            for (Throwable t = e; t != null; t = t.getCause()) {
                if (t instanceof BindException || t instanceof ChannelBindException) {
                    throw new CommandException(ExitStatus.UNAVAILABLE, "cannot listen on --host " + host + " --port " + port + ": "
                            + t.getMessage(), e);
                }
            }
            throw e;
        }
    }

    /** Runs the command and exits with its {@link ExitStatus}. */
    public static void main(String[] args) {
        System.exit(CommandErrors.install(new CommandLine(new ServeCommand())).execute(args));
    }
}
