package dev.routingreplay.examples;

import dev.routingreplay.examples.cli.ClusterReadCommand;
import dev.routingreplay.examples.cli.CommandErrors;
import dev.routingreplay.examples.cli.ExportCommand;
import dev.routingreplay.examples.cli.ServeCommand;
import dev.routingreplay.examples.cli.SidecarCommand;
import dev.routingreplay.examples.cli.VerboseOption;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/**
 * The {@code r3} command line: {@code run} (simulated rollout into a store, then the trainer check), {@code verify}
 * (the trainer check of an existing store), {@code export} (a store's requests as {@code .npy} files) and
 * {@code serve} (a store over HTTP for trainers off the JVM) and {@code sidecar} (the engine bridge: an engine in another
 * process feeds the capture pipeline over a Unix domain socket) and {@code cluster-read} (a trainer's reader of many rollout
 * nodes: announcements from Kafka, payloads fetched from the nodes). Every failure is one line on standard error and an
 * {@link dev.routingreplay.examples.cli.ExitStatus} (0 ok, 1 check failed, 2 usage, 3 store, 4 output exists, 5 output I/O,
 * 6 unavailable, 70 internal); {@code --verbose} adds the stack trace.
 */
@Command(name = "r3", mixinStandardHelpOptions = true, version = "r3 0.1.0",
        description = "Rollout routing replay: capture MoE routing during rollouts and replay it in training.",
        subcommands = {RunCommand.class},
        footer = {"Exit status: 0 ok, 1 check failed, 2 usage, 3 store missing/unreadable, 4 output exists, 5 output I/O error,",
            "6 backend or port unavailable, 70 internal error (--verbose prints the stack trace)."})
public final class R3Command implements Runnable {
    @Mixin
    VerboseOption verbose;

    @Override
    public void run() {
        CommandLine.usage(this, System.out);
    }

    /** The {@code r3} command line with every subcommand and the error handling of {@link CommandErrors}; not yet run. */
    public static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new R3Command());
        add(cli, "verify", new Trainer());
        add(cli, "export", new ExportCommand());
        add(cli, "serve", new ServeCommand());
        add(cli, "sidecar", new SidecarCommand());
        add(cli, "cluster-read", new ClusterReadCommand());
        return CommandErrors.install(cli);
    }

    /**
     * Adds {@code command} as {@code r3 <name>}: its help and errors name it so, whatever name its class declares for
     * its own {@code main} (before: {@code r3 export --help} printed {@code Usage: r3 r3-export}).
     */
    private static void add(CommandLine cli, String name, Object command) {
        cli.addSubcommand(name, new CommandLine(command).setCommandName(name));
    }

    /** Runs the command line and exits with its status. */
    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }
}
