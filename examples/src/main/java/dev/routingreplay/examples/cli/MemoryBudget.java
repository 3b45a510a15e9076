package dev.routingreplay.examples.cli;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSlotLayout;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * What a command's options will allocate, added up before anything is allocated or created, and checked against the
 * JVM's limits: direct memory (the slot store, the staging ring, the engine's buffers: {@code ByteBuffer.allocateDirect},
 * limited by {@code -XX:MaxDirectMemorySize}, by default the heap limit) and heap. A budget that does not fit is refused
 * with one line naming the options, each part and the limit, instead of an {@code OutOfMemoryError} after the store
 * folder was created.
 *
 * <p>Memory the budget does not count (the store's and the libraries' own small buffers) is covered by
 * {@link #RESERVE_BYTES} kept free. Mapped store files and CUDA memory (device staging, pinned host buffers) are outside
 * both limits and not counted.
 */
public final class MemoryBudget {
    /** Kept free beside the counted parts: Chronicle's, Netty's and the JDK's own buffers. */
    public static final long RESERVE_BYTES = 16L << 20;

    private final String options;
    private final List<Part> direct = new ArrayList<>();
    private final List<Part> heap = new ArrayList<>();

    /**
     * One counted allocation.
     *
     * @param what what it is and how its size comes about, e.g. {@code slot store 30720 slots x 464 B}
     * @param bytes its size ({@link Long#MAX_VALUE} when it overflows)
     */
    public record Part(String what, long bytes) {
    }

    /**
     * The limits of a JVM.
     *
     * @param maxDirect the most direct memory ({@code -XX:MaxDirectMemorySize}, else the heap limit)
     * @param directSource where {@code maxDirect} comes from, as the message names it
     * @param directUsed direct memory in use now
     * @param maxHeap the heap limit ({@code -Xmx})
     * @param heapUsed heap in use now
     */
    public record Limits(long maxDirect, String directSource, long directUsed, long maxHeap, long heapUsed) {
        /** This JVM's limits and use, now. */
        public static Limits ofThisJvm() {
            Runtime rt = Runtime.getRuntime();
            long flag = maxDirectMemorySizeFlag();
            long maxDirect = flag > 0 ? flag : rt.maxMemory();
            String source = flag > 0 ? "-XX:MaxDirectMemorySize" : "-XX:MaxDirectMemorySize unset, so the heap limit";
            long directUsed = 0;
            for (BufferPoolMXBean pool : ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)) {
                if (pool.getName().equals("direct")) {
                    directUsed = Math.max(0, pool.getMemoryUsed());
                }
            }
            return new Limits(maxDirect, source, directUsed, rt.maxMemory(), rt.totalMemory() - rt.freeMemory());
        }
    }

    private MemoryBudget(String options) {
        this.options = options;
    }

    /** An empty budget for {@code options}, the options that size it as the user gave them (named in the message). */
    public static MemoryBudget of(String options) {
        return new MemoryBudget(options);
    }

    /** Adds {@code bytes} of direct memory for {@code what}. */
    public MemoryBudget direct(String what, long bytes) {
        direct.add(new Part(what, bytes));
        return this;
    }

    /** Adds {@code bytes} of heap for {@code what}. */
    public MemoryBudget heap(String what, long bytes) {
        heap.add(new Part(what, bytes));
        return this;
    }

    /** The direct memory counted, saturating at {@link Long#MAX_VALUE}. */
    public long directBytes() {
        return sum(direct);
    }

    /** The heap counted, saturating at {@link Long#MAX_VALUE}. */
    public long heapBytes() {
        return sum(heap);
    }

    /**
     * Why the budget does not fit {@code limits}, as one line naming the options, the parts and the limit; empty when it
     * fits (with {@link #RESERVE_BYTES} to spare in each).
     */
    public Optional<String> shortfall(Limits limits) {
        long directFree = limits.maxDirect() - limits.directUsed() - RESERVE_BYTES;
        if (directBytes() > directFree) {
            return Optional.of(options + " need " + bytes(directBytes()) + " of direct memory (" + describe(direct) + "), but this JVM allows "
                    + bytes(limits.maxDirect()) + " (" + limits.directSource() + ") with " + bytes(limits.directUsed()) + " in use and "
                    + bytes(RESERVE_BYTES) + " kept free; lower those options or raise -XX:MaxDirectMemorySize");
        }
        long heapFree = limits.maxHeap() - limits.heapUsed() - RESERVE_BYTES;
        if (heapBytes() > heapFree) {
            return Optional.of(options + " need " + bytes(heapBytes()) + " of heap (" + describe(heap) + "), but this JVM allows "
                    + bytes(limits.maxHeap()) + " (-Xmx) with " + bytes(limits.heapUsed()) + " in use and " + bytes(RESERVE_BYTES)
                    + " kept free; lower those options or raise -Xmx");
        }
        return Optional.empty();
    }

    /**
     * Bytes of the staging ring: {@code depth} ring slots of {@link RingSlotLayout} for {@code maxTokens} tokens of
     * {@code shape}, {@code copies} times ({@link Long#MAX_VALUE} when one slot would exceed 2 GiB, which the ring refuses).
     */
    public static long ringBytes(RoutingShape shape, long maxTokens, int depth, int copies) {
        long slot;
        try {
            slot = new RingSlotLayout(shape, Math.toIntExact(maxTokens)).totalBytes();
        } catch (ArithmeticException e) {
            return Long.MAX_VALUE;
        }
        return times(times(slot, depth), copies);
    }

    /** {@code a * b}, saturating at {@link Long#MAX_VALUE}. */
    public static long times(long a, long b) {
        long r = a * b;
        return (a != 0 && (r / a != b || r < 0)) ? Long.MAX_VALUE : r;
    }

    /** A size in binary units, e.g. {@code 64.0 MiB}. */
    public static String bytes(long n) {
        if (n == Long.MAX_VALUE) {
            return "more than 8 EiB";
        }
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        double v = n;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return u == 0 ? n + " B" : String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }

    private static String describe(List<Part> parts) {
        List<String> out = new ArrayList<>();
        for (Part p : parts) {
            out.add(p.what() + " = " + bytes(p.bytes()));
        }
        return String.join("; ", out);
    }

    private static long sum(List<Part> parts) {
        long s = 0;
        for (Part p : parts) {
            s = s > Long.MAX_VALUE - p.bytes() ? Long.MAX_VALUE : s + p.bytes();
        }
        return s;
    }

    /** {@code -XX:MaxDirectMemorySize} in bytes, 0 when unset (the JDK then allows as much as the heap limit). */
    private static long maxDirectMemorySizeFlag() {
        try {
            com.sun.management.HotSpotDiagnosticMXBean hotspot = ManagementFactory.getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class);
            return Long.parseLong(hotspot.getVMOption("MaxDirectMemorySize").getValue());
        } catch (RuntimeException | LinkageError e) {
            // not HotSpot, or jdk.management absent: the flag as given on the command line
            for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
                if (arg.startsWith("-XX:MaxDirectMemorySize=")) {
                    return parseSize(arg.substring(arg.indexOf('=') + 1));
                }
            }
            return 0;
        }
    }

    private static long parseSize(String s) {
        try {
            char unit = Character.toLowerCase(s.charAt(s.length() - 1));
            int shift = switch (unit) {
                case 'k' -> 10;
                case 'm' -> 20;
                case 'g' -> 30;
                case 't' -> 40;
                default -> 0;
            };
            return Long.parseLong(shift == 0 ? s : s.substring(0, s.length() - 1)) << shift;
        } catch (RuntimeException e) {
            return 0;
        }
    }
}
