package dev.kvq.runtime.onnx;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.spi.Decoder;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

@EnabledIfSystemProperty(named = "kvq.study", matches = "true")
class PhaseProbe {
    @Test
    void phases() {
        ModelDir dir = ModelDir.open(Path.of(System.getProperty("kvq.model", "../models/kvq-demo-char")));
        try (Decoder d = new OnnxRuntimeProvider().open(dir, "cpu"); Tokenizer t = Tokenizers.load(dir)) {
            for (int rep = 0; rep < 2; rep++) {
                for (String name : List.of("fp", "kivi42-kvtuner", "kivi42-append", "pertoken4-kvtuner", "pertoken4-append")) {
                    CacheFactory f = switch (name) {
                        case "fp" -> CacheFactory.fullPrecision(dir.config().shape());
                        case "kivi42-kvtuner" -> CacheFactory.quantized(KvCaches.spec(KvQuantConfig.kivi(4, 2).build(), dir.config().shape()));
                        case "kivi42-append" -> CacheFactory.quantized(KvCaches.spec(KvQuantConfig.kivi(4, 2).policy(CachePolicy.APPEND).build(), dir.config().shape()));
                        case "pertoken4-kvtuner" -> CacheFactory.quantized(KvCaches.spec(KvQuantConfig.perToken(4, 4).build(), dir.config().shape()));
                        default -> CacheFactory.quantized(KvCaches.spec(KvQuantConfig.perToken(4, 4).policy(CachePolicy.APPEND).build(), dir.config().shape()));
                    };
                    var out = new Generator(d, t, f).generate(List.of("ROMEO:"), Generator.Options.greedy(400), null);
                    var s = out.stats();
                    var p = s.phases();
                    System.out.printf("%-18s decode %.0f tok/s; per step: materialize %.3f ms, forward %.3f ms, append %.3f ms%n", name,
                            s.decodeTokensPerSecond(), p.materializeNanos() / 1e6 / s.decodeSteps(), p.forwardNanos() / 1e6 / s.decodeSteps(),
                            p.appendNanos() / 1e6 / s.decodeSteps());
                }
            }
        }
    }
}
