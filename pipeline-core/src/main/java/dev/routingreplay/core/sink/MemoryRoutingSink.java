package dev.routingreplay.core.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A sink that keeps everything in memory: an off-heap {@link SlotStore} and the finished requests' routing. Not
 * durable; meant for tests, demos and engines that hand routing to a trainer in-process.
 */
public class MemoryRoutingSink implements RoutingSink, AutoCloseable {
    private final SlotStore store;
    private final Map<String, RequestRouting> finished = new ConcurrentHashMap<>();
    private final List<String> finishOrder = new ArrayList<>();

    /** A sink for slots {@code [0, slotCapacity)} of {@code shape}'s rows. */
    public MemoryRoutingSink(RoutingShape shape, int slotCapacity) {
        this.store = new SlotStore(shape, slotCapacity);
    }

    @Override
    public RoutingShape shape() {
        return store.shape();
    }

    @Override
    public int slotCapacity() {
        return store.slotCapacity();
    }

    @Override
    public int scatter(CapturedStep step) {
        return store.scatter(step);
    }

    @Override
    public void admit(RequestAdmitted request) {
        store.admit(request.requestId(), request.cachedTokens());
    }

    @Override
    public void finish(RequestFinished request) {
        RequestRouting routing = store.gather(request);
        finished.put(request.requestId(), routing);
        synchronized (finishOrder) {
            finishOrder.add(request.requestId());
        }
    }

    @Override
    public void abort(RequestAborted request) {
        store.forget(request.requestId()); // nothing stored for an aborted request
    }

    @Override
    public void move(SlotsMoved move) {
        store.move(move);
    }

    @Override
    public void clear(RoundCleared clear) {
        store.clear();
    }

    /** The routing of finished request {@code requestId} (its latest record when it finished twice), or null. Safe from any thread. */
    public RequestRouting finished(String requestId) {
        return finished.get(requestId);
    }

    /** Finished requests' ids, in finish order. Safe from any thread. */
    public List<String> finishedIds() {
        synchronized (finishOrder) {
            return List.copyOf(finishOrder);
        }
    }

    /**
     * The rows now stored at {@code slots}, as a request named {@code "slots"}: rows of the current round, the others
     * missing with their reason. Call it from the sink thread or after the pipeline terminated.
     */
    public RequestRouting read(int... slots) {
        return store.read(slots);
    }

    /** Frees the slot store. */
    @Override
    public void close() {
        store.close();
    }
}
