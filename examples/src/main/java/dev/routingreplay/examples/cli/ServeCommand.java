package dev.routingreplay.examples.cli;

import dev.routingreplay.sink.ReplayServer;
import dev.routingreplay.sink.StoreException;
import java.io.IOException;
import java.net.BindException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
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
        String token = token();
        String auth = token == null ? "no token" : "bearer token from " + (tokenFile != null ? "--token-file" : TOKEN_ENV);
        CountDownLatch stop = new CountDownLatch(1);
        try (ReplayServer server = start(token)) {
            Runtime.getRuntime().addShutdownHook(new Thread(stop::countDown, "r3-serve-stop"));
            spec.commandLine().getOut().printf("serving %s on http://%s:%d/requests (%s; Ctrl-C stops)%n", store, host, server.port(), auth);
            spec.commandLine().getOut().flush();
            stop.await();
        }
        return ExitStatus.OK.code();
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
