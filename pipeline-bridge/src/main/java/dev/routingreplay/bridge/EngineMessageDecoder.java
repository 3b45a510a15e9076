package dev.routingreplay.bridge;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.DecoderException;
import io.netty.handler.codec.MessageToMessageDecoder;
import io.netty.handler.codec.TooLongFrameException;
import java.util.List;

/**
 * The Netty stage after {@link FrameCodec#frameDecoder()}: turns each frame body into an {@link EngineMessage}, on
 * the connection's event loop. A malformed body, and a frame the frame decoder refused (too long), pass on as a
 * {@link ProtocolException} object in the same ordered stream, so the session sees every message before it and then
 * the error. The frame's buffer is released here; nothing downstream holds Netty memory. One instance per
 * connection.
 */
final class EngineMessageDecoder extends MessageToMessageDecoder<ByteBuf> {
    EngineMessageDecoder() {
        super(ByteBuf.class);
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf body, List<Object> out) {
        try {
            out.add(FrameCodec.decodeEngine(body));
        } catch (ProtocolException e) {
            out.add(e);
        }
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        Throwable c = cause instanceof DecoderException && cause.getCause() != null ? cause.getCause() : cause;
        if (c instanceof TooLongFrameException || cause instanceof TooLongFrameException) {
            ctx.fireChannelRead(new ProtocolException(FailureCode.PROTOCOL, "frame too long: a body holds at most "
                    + FrameCodec.MAX_BODY_BYTES + " bytes (" + c.getMessage() + ")", cause));
        } else if (cause instanceof DecoderException) {
            ctx.fireChannelRead(new ProtocolException(FailureCode.PROTOCOL, "bad frame: " + c.getMessage(), cause));
        } else {
            ctx.fireExceptionCaught(cause);
        }
    }
}
