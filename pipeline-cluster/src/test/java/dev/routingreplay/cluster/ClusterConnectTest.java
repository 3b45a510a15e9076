package dev.routingreplay.cluster;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import reactor.test.StepVerifier;

/**
 * The reader's first broker contact has a deadline: with no broker at the bootstrap servers (a loopback port nobody
 * listens on) the Flux fails naming them, instead of polling forever with only the Kafka client's warnings.
 */
class ClusterConnectTest {
    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void noBrokerReachableFailsWithinTheConnectTimeoutNamingTheBootstrapServers() throws Exception {
        String bootstrap = "127.0.0.1:" + KafkaBroker.freePort();
        ClusterReader reader = ClusterReader.builder(bootstrap, "trainer", "r3-requests").connectTimeout(Duration.ofSeconds(2)).build();
        long started = System.nanoTime();
        StepVerifier.create(reader.read())
                .expectErrorSatisfies(e -> {
                    assertTrue(e instanceof ClusterReadException, e.toString());
                    assertTrue(e.getMessage().contains("no Kafka broker answered at " + bootstrap + " within 2000 ms"), e.getMessage());
                })
                .verify(Duration.ofSeconds(30));
        long seconds = TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - started);
        assertTrue(seconds >= 1 && seconds < 20, "failed after " + seconds + " s");
    }

    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void theConnectTimeoutMustBePositive() {
        ClusterReader.Builder b = ClusterReader.builder("127.0.0.1:9092", "trainer", "r3-requests");
        assertThrows(IllegalArgumentException.class, () -> b.connectTimeout(Duration.ZERO));
        assertThrows(IllegalArgumentException.class, () -> b.connectTimeout(null));
    }
}
