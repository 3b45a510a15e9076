package dev.routingreplay.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class RoutingShapeTest {

    @Test
    void presetsMatchTheDesignTable() {
        assertEquals(464, ModelPreset.DEEPSEEK_V3.shape().rowBytes());
        assertEquals(RoutingDtype.UINT8, ModelPreset.DEEPSEEK_V3.shape().dtype());
        assertEquals(960, ModelPreset.KIMI_K2.shape().rowBytes());
        assertEquals(384, ModelPreset.QWEN3_30B_A3B.shape().rowBytes());
        assertEquals(RoutingDtype.UINT8, ModelPreset.QWEN3_30B_A3B.shape().dtype());
        assertEquals(360, ModelPreset.GLM_4_5_AIR.shape().rowBytes());
        assertEquals(144, ModelPreset.GPT_OSS_120B.shape().rowBytes());
        assertEquals(64, ModelPreset.MIXTRAL_8X7B.shape().rowBytes());
    }

    @Test
    void dtypeIsTheSmallestThatHoldsTheIdsWithNoValueReserved() {
        assertEquals(RoutingDtype.UINT8, RoutingDtype.forExperts(255));
        assertEquals(RoutingDtype.UINT8, RoutingDtype.forExperts(256));
        assertEquals(RoutingDtype.UINT16, RoutingDtype.forExperts(257));
        assertEquals(RoutingDtype.UINT16, RoutingDtype.forExperts(65536));
        assertEquals(RoutingDtype.INT32, RoutingDtype.forExperts(65537));
        assertEquals(RoutingDtype.UINT8, ModelPreset.DEEPSEEK_V3.shape().dtype());
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(2);
        RoutingDtype.UINT8.write(b, 0, 255);
        assertEquals(255, RoutingDtype.UINT8.read(b, 0), "255 is expert 255, not a sentinel");
    }

    @Test
    void theLegacyRuleKeptRoomForTheSentinel() {
        assertEquals(RoutingDtype.UINT8, RoutingDtype.legacyForExperts(255));
        assertEquals(RoutingDtype.UINT16, RoutingDtype.legacyForExperts(256));
        assertEquals(RoutingDtype.UINT16, RoutingDtype.legacyForExperts(65535));
        assertEquals(RoutingDtype.INT32, RoutingDtype.legacyForExperts(65536));
        assertEquals(0xFF, RoutingDtype.UINT8.legacySentinel());
        assertEquals(0xFFFF, RoutingDtype.UINT16.legacySentinel());
        assertEquals(-1, RoutingDtype.INT32.legacySentinel());
    }

    @Test
    void badShapesNameTheField() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new RoutingShape(0, 8, 256));
        assertTrue(e.getMessage().contains("moeLayers"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new RoutingShape(4, 9, 8));
        assertTrue(e.getMessage().contains("topK=9"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ModelPreset.fromName("llama"));
        assertTrue(e.getMessage().contains("deepseek-v3"), e.getMessage());
        assertEquals(ModelPreset.QWEN3_30B_A3B, ModelPreset.fromName("QWEN3_30B_A3B"));
        assertEquals(ModelPreset.GLM_4_5_AIR, ModelPreset.fromName("glm-4.5-air"));
    }
}
