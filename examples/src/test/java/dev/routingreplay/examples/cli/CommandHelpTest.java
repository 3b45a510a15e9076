package dev.routingreplay.examples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.examples.R3Command;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** {@code r3 <command> --help} names the command as the user types it (before: {@code Usage: r3 r3-export}). */
class CommandHelpTest {
    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void everySubcommandsHelpNamesItAsTyped() {
        var names = R3Command.commandLine().getSubcommands().keySet();
        assertEquals(java.util.Set.of("run", "verify", "export", "serve", "sidecar", "cluster-read"), names);
        for (String name : names) {
            CommandRun help = CommandRun.of(R3Command.commandLine(), name, "--help");
            assertEquals(ExitStatus.OK.code(), help.status(), help::toString);
            assertTrue(help.out().startsWith("Usage: r3 " + name + " ["), name + ": " + help.out().lines().findFirst().orElse(""));
        }
    }
}
