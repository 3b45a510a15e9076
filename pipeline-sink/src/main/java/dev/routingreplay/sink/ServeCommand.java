package dev.routingreplay.sink;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code r3 serve}: serves a store's requests over HTTP ({@link ReplayServer}) until interrupted. */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve a routing store over HTTP: /manifest, /requests (NDJSON, ?after=&limit=&follow=true), /requests/<index>.npy")
public final class ServeCommand implements Callable<Integer> {
    @Option(names = "--store", required = true, description = "The store folder.")
    Path store;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to listen on (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8787", description = "Port (default: ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Override
    public Integer call() throws InterruptedException {
        CountDownLatch stop = new CountDownLatch(1);
        try (ReplayServer server = ReplayServer.start(store, host, port)) {
            Runtime.getRuntime().addShutdownHook(new Thread(stop::countDown, "r3-serve-stop"));
            System.out.printf("serving %s on http://%s:%d/requests (Ctrl-C stops)%n", store, host, server.port());
            stop.await();
        }
        return 0;
    }

    /** Runs the command. */
    public static void main(String[] args) {
        System.exit(new CommandLine(new ServeCommand()).execute(args));
    }
}
