package dev.kvq.examples;

import dev.kvq.config.KvQuantConfig;
import dev.kvq.lib.GenerateOptions;
import dev.kvq.lib.Generation;
import dev.kvq.lib.Kvq;
import dev.kvq.lib.Perplexity;
import dev.kvq.lib.PerplexityOptions;
import java.nio.file.Files;
import java.nio.file.Path;

/** Generates through a 3-bit KIVI cache, then measures what the cache costs against full precision. */
public class QuantizedGeneration {
    public static void main(String[] args) throws Exception {
        Path model = Path.of(args.length > 0 ? args[0] : "models/kvq-demo-char");
        // KIVI: 4-bit keys per channel, 2-bit values per token, the newest 32 tokens kept in float32
        KvQuantConfig config = KvQuantConfig.kivi(4, 2).backend("vanilla").runtime("onnx").device("cpu").build();
        try (Kvq kvq = Kvq.open(model, config)) {
            System.out.println("cache: " + kvq.info().cache());
            Generation g = kvq.generate("ROMEO:\n", GenerateOptions.greedy(160),
                    (sequence, token, text) -> System.out.print(text));
            System.out.printf("%n%d new tokens, %,d KV bytes (float16 would hold %,d)%n",
                    g.completions().getFirst().tokens().length, g.kvBytes(), g.kvBytesFp16());

            String text = Files.readString(model.resolve("sample.txt"));
            Perplexity p = kvq.perplexity(text.substring(0, 3000), PerplexityOptions.defaults());
            System.out.printf("perplexity %.4f, full precision %.4f, top-1 agreement %.4f over %d tokens%n",
                    p.perplexity(), p.fullPrecisionPerplexity(), p.top1Agreement(), p.tokens());
        }
    }
}
