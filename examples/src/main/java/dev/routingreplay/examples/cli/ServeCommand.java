package dev.routingreplay.examples.cli;

import dev.routingreplay.sink.ReplayServer;
import dev.routingreplay.sink.StoreException;
import java.net.BindException;
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
 * {@link ExitStatus#UNAVAILABLE}.
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve a routing store over HTTP: /manifest, /requests (NDJSON, ?after=&limit=&follow=true), /requests/<index>.npy")
public final class ServeCommand implements Callable<Integer> {
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
        CountDownLatch stop = new CountDownLatch(1);
        try (ReplayServer server = start()) {
            Runtime.getRuntime().addShutdownHook(new Thread(stop::countDown, "r3-serve-stop"));
            spec.commandLine().getOut().printf("serving %s on http://%s:%d/requests (Ctrl-C stops)%n", store, host, server.port());
            spec.commandLine().getOut().flush();
            stop.await();
        }
        return ExitStatus.OK.code();
    }

    private ReplayServer start() {
        try {
            return ReplayServer.start(store, host, port, new ReplayServer.Limits(Duration.ofMillis(idleTimeoutMs), maxFollowers));
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
