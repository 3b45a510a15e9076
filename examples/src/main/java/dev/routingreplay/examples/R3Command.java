package dev.routingreplay.examples;

import dev.routingreplay.sink.ExportCommand;
import dev.routingreplay.sink.ServeCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code r3} command line: {@code run} (simulated rollout into a store, then the trainer check), {@code verify}
 * (the trainer check of an existing store), {@code export} (a store's requests as {@code .npy} files) and
 * {@code serve} (a store over HTTP for trainers off the JVM).
 */
@Command(name = "r3", mixinStandardHelpOptions = true, version = "r3 0.1.0",
        description = "Rollout routing replay: capture MoE routing during rollouts and replay it in training.",
        subcommands = {RunCommand.class})
public final class R3Command implements Runnable {
    @Override
    public void run() {
        CommandLine.usage(this, System.out);
    }

    /** Runs the command line and exits with its status. */
    public static void main(String[] args) {
        CommandLine cli = new CommandLine(new R3Command());
        cli.addSubcommand("verify", new Trainer());
        cli.addSubcommand("export", new ExportCommand());
        cli.addSubcommand("serve", new ServeCommand());
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            if (e instanceof IllegalArgumentException) {
                commandLine.getErr().println("r3: " + e.getMessage());
                return 2;
            }
            throw e;
        });
        System.exit(cli.execute(args));
    }
}
