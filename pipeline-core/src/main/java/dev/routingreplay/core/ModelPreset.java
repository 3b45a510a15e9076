package dev.routingreplay.core;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** Routing shapes of well-known MoE models (see DESIGN.md's data facts). */
public enum ModelPreset {
    /** DeepSeek-V3: 58 MoE layers, 256 routed experts, top 8; uint8 (464 bytes a row). */
    DEEPSEEK_V3("deepseek-v3", new RoutingShape(58, 8, 256)),
    /** Kimi K2: 60 MoE layers, 384 routed experts, top 8; uint16 (960 bytes a row). */
    KIMI_K2("kimi-k2", new RoutingShape(60, 8, 384)),
    /** Qwen3-30B-A3B: 48 MoE layers, 128 experts, top 8; uint8 (384 bytes a row). */
    QWEN3_30B_A3B("qwen3-30b-a3b", new RoutingShape(48, 8, 128)),
    /** GLM-4.5-Air: 45 MoE layers, 128 experts, top 8; uint8 (360 bytes a row). */
    GLM_4_5_AIR("glm-4.5-air", new RoutingShape(45, 8, 128)),
    /** gpt-oss-120b: 36 MoE layers, 128 experts, top 4; uint8 (144 bytes a row). */
    GPT_OSS_120B("gpt-oss-120b", new RoutingShape(36, 4, 128)),
    /** Mixtral-8x7B: 32 MoE layers, 8 experts, top 2; uint8 (64 bytes a row). */
    MIXTRAL_8X7B("mixtral-8x7b", new RoutingShape(32, 2, 8));

    private final String cliName;
    private final RoutingShape shape;

    ModelPreset(String cliName, RoutingShape shape) {
        this.cliName = cliName;
        this.shape = shape;
    }

    /** The routing shape of this model. */
    public RoutingShape shape() {
        return shape;
    }

    /** The lower-case name used on command lines, e.g. {@code deepseek-v3}. */
    public String cliName() {
        return cliName;
    }

    /** Finds a preset by its command-line name or enum name, ignoring case; the error lists the valid names. */
    public static ModelPreset fromName(String name) {
        String wanted = name.trim().toLowerCase(Locale.ROOT).replace('_', '-');
        for (ModelPreset p : values()) {
            if (p.cliName.equals(wanted) || p.name().toLowerCase(Locale.ROOT).replace('_', '-').equals(wanted)) {
                return p;
            }
        }
        throw new IllegalArgumentException("unknown model preset '" + name + "'; expected one of "
                + Arrays.stream(values()).map(ModelPreset::cliName).collect(Collectors.joining(", ")));
    }
}
