import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostPack;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.StoreConfig;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * Writes a store for test_missing_rows.py (run in Java's source-file mode on the examples' classpath): shape
 * [3 layers, top 2 of 256 experts] (uint8), request "whole" (5 tokens, slots 0..4) and request "gap" (5 tokens, slots
 * 10..14) whose token 2 had expert id 256 (out of range), so the host pack dropped its row and the sink recorded it
 * missing. The steps go to the sink directly: the capture pipeline would reject the bad id before the sink.
 * Ids: (255 - 3 * t - 50 * j) mod 256 for token t, id j of the row (so 255 is in every first id of token 0).
 */
public class MissingRowsStore {
    static final RoutingShape SHAPE = new RoutingShape(3, 2, 256);

    public static void main(String[] args) {
        StoreConfig config = StoreConfig.of(Path.of(args[0]), SHAPE, 64).withMinFreeBytes(0);
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            sink.scatter(step(1, 0, -1));
            sink.scatter(step(2, 10, 2));
            sink.finish(new RequestFinished("whole", new int[] {0, 1, 2, 3, 4}));
            sink.finish(new RequestFinished("gap", new int[] {10, 11, 12, 13, 14}));
        }
    }

    static CapturedStep step(long stepId, int firstSlot, int bad) {
        int n = 5;
        int per = SHAPE.idsPerRow();
        RingSpec spec = new RingSpec(SHAPE, 1, n, 64);
        ByteBuffer ids = ByteBuffer.allocateDirect(n * per * 4).order(ByteOrder.nativeOrder());
        ByteBuffer slots = ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder());
        for (int t = 0; t < n; t++) {
            slots.putInt(t * 4, firstSlot + t);
            for (int j = 0; j < per; j++) {
                ids.putInt((t * per + j) * 4, t == bad && j == 1 ? 256 : Math.floorMod(255 - 3 * t - 50 * j, 256));
            }
        }
        ByteBuffer staging = ByteBuffer.allocateDirect(spec.layout().totalBytes()).order(ByteOrder.nativeOrder());
        HostPack.pack(ids, ElementType.INT32, slots, ElementType.INT32, n, spec, staging);
        CapturedStep.Owner owner = CapturedStep.over(spec, staging);
        owner.aim(stepId, n);
        return owner.view();
    }
}
