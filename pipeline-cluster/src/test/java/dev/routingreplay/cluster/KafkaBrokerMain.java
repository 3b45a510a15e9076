package dev.routingreplay.cluster;

/**
 * The child JVM of {@link KafkaBroker}: formats the KRaft storage of a server.properties (when not formatted yet), then
 * runs the broker ({@code kafka.Kafka}) until killed. Arguments: the properties file and the cluster id.
 */
public final class KafkaBrokerMain {
    private KafkaBrokerMain() {
    }

    /** Formats, then serves. */
    public static void main(String[] args) throws Exception {
        int status = kafka.tools.StorageTool.execute(new String[] {"format", "--ignore-formatted", "-t", args[1], "-c", args[0],
            "--standalone"}, System.out);
        if (status != 0) {
            System.err.println("format failed with status " + status);
            System.exit(status);
        }
        kafka.Kafka.main(new String[] {args[0]});
    }
}
