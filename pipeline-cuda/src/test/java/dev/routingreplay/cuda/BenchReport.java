package dev.routingreplay.cuda;

/** The GPU benchmarks' markdown report: each line goes to standard output as it is made and into the report. */
final class BenchReport {
    private BenchReport() {
    }

    /** Appends {@code text} and a newline to {@code report} and prints it. */
    static void line(StringBuilder report, String text) {
        report.append(text).append('\n');
        System.out.println(text);
    }
}
