/**
 * The sidecar side of the engine bridge (docs/engine-bridge.md): a rollout engine in another process on the same
 * machine feeds the capture pipeline over a Unix domain socket, and the pipeline reads the engine's routing buffers
 * where they are (CUDA IPC, or mapped files on the host backend) through {@link
 * dev.routingreplay.core.device.InterprocessDevice}.
 *
 * <p>{@link dev.routingreplay.bridge.SidecarServer} listens (Reactor Netty, NIO Unix domain sockets) and runs one
 * engine session at a time; {@link dev.routingreplay.bridge.FrameCodec} is the wire format, into the records of
 * {@link dev.routingreplay.bridge.EngineMessage} and {@link dev.routingreplay.bridge.SidecarMessage}; a session's
 * failure is a {@code FAILED} message with a {@link dev.routingreplay.bridge.FailureCode}; each session ends with a
 * {@link dev.routingreplay.bridge.SessionSummary}. Depends on pipeline-core and Reactor Netty only: the caller
 * supplies the device and the sink ({@link dev.routingreplay.bridge.SinkFactory}).
 */
package dev.routingreplay.bridge;
