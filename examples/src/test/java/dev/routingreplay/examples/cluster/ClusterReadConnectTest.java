package dev.routingreplay.examples.cluster;

import dev.routingreplay.cluster.KafkaBroker;
import dev.routingreplay.examples.R3Command;
import dev.routingreplay.examples.cli.CommandRun;
import dev.routingreplay.examples.cli.ExitStatus;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@code r3 cluster-read} with no broker at {@code --bootstrap} (a loopback port nobody listens on) exits with status 6
 * and one line naming the bootstrap servers after {@code --connect-timeout-ms} (before: it polled forever).
 */
class ClusterReadConnectTest {
    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void noBrokerReachableIsStatus6NamingTheBootstrapServers() throws Exception {
        String bootstrap = "127.0.0.1:" + KafkaBroker.freePort();
        CommandRun.of(R3Command.commandLine(), "cluster-read", "--bootstrap", bootstrap, "--group", "trainer", "--connect-timeout-ms", "2000")
                .assertFails(ExitStatus.UNAVAILABLE, "r3 cluster-read: ", "no Kafka broker answered at " + bootstrap + " within 2000 ms",
                        "--connect-timeout-ms");
        CommandRun.of(R3Command.commandLine(), "cluster-read", "--bootstrap", bootstrap, "--group", "trainer", "--connect-timeout-ms", "0")
                .assertFails(ExitStatus.USAGE, "r3 cluster-read: ", "--connect-timeout-ms", "0");
    }
}
