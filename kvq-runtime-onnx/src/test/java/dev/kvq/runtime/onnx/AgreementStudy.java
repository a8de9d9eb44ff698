package dev.kvq.runtime.onnx;

import dev.kvq.cache.ForwardingKvCache;
import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.FullPrecisionKvCache;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.tensor.KvView;
import dev.kvq.testkit.Shared;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * How fragile greedy-continuation agreement is: KV8 per-token and a float16 cache (a control far more precise
 * than 8 bits) against float32, over four fixed prompt rules, five prompts each, 300 characters. Run with
 * {@code mvn -pl kvq-runtime-onnx test -Dtest=AgreementStudy -Dkvq.study=true}; prints a table, asserts nothing.
 */
@EnabledIfSystemProperty(named = "kvq.study", matches = "true")
class AgreementStudy {
    @Test
    void greedyAgreementAcrossPromptRules() throws Exception {
        ModelDir dir = ModelDir.open(Shared.require("models/shakespeare-char-llama"));
        String held = Files.readString(Shared.require("data/tinyshakespeare/input.txt")).substring(1003854);
        ModelShape shape = dir.config().shape();
        try (Decoder d = new OnnxRuntimeProvider().open(dir, "cpu"); Tokenizer t = Tokenizers.load(dir)) {
            System.out.println("rule  cache  first divergences (of 300)       agreement");
            for (int rule = 0; rule < 4; rule++) {
                List<String> prompts = prompts(held, rule);
                var fp = new Generator(d, t, CacheFactory.fullPrecision(shape)).generate(prompts,
                        Generator.Options.greedy(300), null);
                for (String kind : List.of("fp16", "KV8")) {
                    CacheFactory caches = kind.equals("fp16") ? fp16(shape)
                            : CacheFactory.quantized(KvCaches.spec(KvQuantConfig.perToken(8, 8).build(), shape));
                    var q = new Generator(d, t, caches).generate(prompts, Generator.Options.greedy(300), null);
                    int same = 0;
                    List<Integer> divergences = new ArrayList<>();
                    for (int i = 0; i < prompts.size(); i++) {
                        String a = fp.results().get(i).text();
                        String b = q.results().get(i).text();
                        int div = -1;
                        for (int k = 0; k < a.length(); k++) {
                            if (k < b.length() && a.charAt(k) == b.charAt(k)) {
                                same++;
                            } else if (div < 0) {
                                div = k;
                            }
                        }
                        divergences.add(div);
                    }
                    System.out.printf("%-5d %-6s %-32s %.4f%n", rule, kind, divergences, same / 1500.0);
                }
            }
        }
    }

    /** Rule 0-2: windows of 32/48/64 characters at fixed offsets; rule 3: the first line of five speeches. */
    static List<String> prompts(String held, int rule) {
        List<String> prompts = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            int off = rule * 3000 + i * 20_000;
            if (rule == 3) {
                off = held.indexOf("\n\n", off) + 2;
                prompts.add(held.substring(off, held.indexOf('\n', off) + 1));
            } else {
                prompts.add(held.substring(off, off + 32 + rule * 16));
            }
        }
        return prompts;
    }

    /** A cache that stores K/V rounded to float16, as the reference's fp16 runs do. */
    static CacheFactory fp16(ModelShape shape) {
        return new CacheFactory() {
            @Override
            public KvCache newCache() {
                return new ForwardingKvCache(new FullPrecisionKvCache(shape)) {
                    @Override
                    public void append(int layer, KvView k, KvView v) {
                        super.append(layer, round(k), round(v));
                    }

                    @Override
                    public KvPair update(int layer, KvView k, KvView v) {
                        return super.update(layer, round(k), round(v));
                    }

                    @Override
                    public long bytesHeld() {
                        return super.bytesHeld() / 2;
                    }
                };
            }

            @Override
            public PrecisionPlan plan() {
                return null;
            }

            @Override
            public String describe() {
                return "float16";
            }
        };
    }

    static KvView round(KvView v) {
        float[] a = v.toArray();
        for (int i = 0; i < a.length; i++) {
            a[i] = Float.float16ToFloat(Float.floatToFloat16(a[i]));
        }
        return KvView.of(a, v.heads(), v.tokens(), v.headDim());
    }
}
