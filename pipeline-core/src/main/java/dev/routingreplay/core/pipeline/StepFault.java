package dev.routingreplay.core.pipeline;

/**
 * A captured step the pack found faults in, reported to {@link CapturePipeline.Builder#onStepFault} on the sink thread
 * after the step took effect. Each fault dropped its token's row: an expert id out of range makes that slot's row a
 * missing row ({@code invalid-id}); a slot mapping entry outside {@code [-1, slotCapacity)} writes nowhere, so the
 * position it was meant for keeps whatever its slot held. The store reports that row missing when it was written
 * before the request's admission, in an earlier round, or already gathered by another request's finish, but it cannot
 * tell it apart from the request's own row when another request, aborted or preempted since, wrote it after the
 * admission: the engine should abort the request that token belonged to (docs/contract.md).
 *
 * @param stepId the engine's step id
 * @param invalidSlots slot mapping entries out of range in the step
 * @param firstInvalidSlotToken the token index of one of them (the first the pack saw), or -1
 * @param firstInvalidSlot its value, as the engine wrote it
 * @param invalidIds expert ids out of range in the step
 * @param firstInvalidIdToken the token index of one of them, or -1
 */
public record StepFault(long stepId, int invalidSlots, int firstInvalidSlotToken, long firstInvalidSlot, int invalidIds,
        int firstInvalidIdToken) {

    /** One line naming the step, the counts and the first token of each kind. */
    public String describe() {
        StringBuilder b = new StringBuilder("step ").append(stepId).append(':');
        if (invalidSlots > 0) {
            b.append(' ').append(invalidSlots).append(" slot mapping entr").append(invalidSlots == 1 ? "y" : "ies")
                    .append(" out of range (token ").append(firstInvalidSlotToken).append(" = ").append(firstInvalidSlot)
                    .append("): those rows went nowhere; abort the requests of those tokens");
        }
        if (invalidIds > 0) {
            b.append(invalidSlots > 0 ? ";" : "").append(' ').append(invalidIds).append(" expert id").append(invalidIds == 1 ? "" : "s")
                    .append(" out of range (first at token ").append(firstInvalidIdToken).append("): those rows are missing (invalid-id)");
        }
        return b.toString();
    }
}
