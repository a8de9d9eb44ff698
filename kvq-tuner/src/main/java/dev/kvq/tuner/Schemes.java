package dev.kvq.tuner;

import dev.kvq.KvqException;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import java.util.Locale;

/**
 * KVTuner's two quantization schemes in each backend's axis spelling: per-token-asym (keys and values grouped along
 * head_dim, no residual window) and per-channel-asym (KIVI: keys grouped along tokens, values along head_dim,
 * residual 32, groups of 32).
 */
public final class Schemes {
    private Schemes() {
    }

    public static KvQuantConfig.Builder base(String scheme, String backend, int headDim, CachePolicy policy) {
        String s = scheme.toLowerCase(Locale.ROOT);
        boolean perChannel = switch (s) {
            case "per-token-asym", "pertoken", "per-token" -> false;
            case "per-channel-asym", "kivi", "per-channel" -> true;
            default -> throw KvqException.config("scheme must be per-token-asym or per-channel-asym, was '" + scheme + "'");
        };
        int tokenAxis = backend.equals("hqq") ? 1 : 0;
        int channelAxis = switch (backend) {
            case "hqq" -> 0;
            case "quanto" -> -1;
            default -> 1;
        };
        KvQuantConfig.Builder b = KvQuantConfig.builder().backend(backend).policy(policy).asym(true);
        if (perChannel) {
            return b.axes(channelAxis, tokenAxis).groupSize(32).residualLength(32);
        }
        return b.axes(tokenAxis, tokenAxis).groupSize(backend.equals("vanilla") ? -1 : headDim).residualLength(0);
    }

    public static String canonical(String scheme) {
        String s = scheme.toLowerCase(Locale.ROOT);
        return s.contains("channel") || s.equals("kivi") ? "per-channel-asym" : "per-token-asym";
    }
}
