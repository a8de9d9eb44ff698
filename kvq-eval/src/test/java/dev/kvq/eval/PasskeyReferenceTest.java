package dev.kvq.eval;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.Runtimes;
import dev.kvq.testkit.Shared;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Policy {@code kvtuner} reproduces the passkey accuracy that KVTuner's own cache reached driving the same model
 * ({@code data/passkey/reference-accuracy.json}, first 150 prompts), within 2 prompts.
 */
class PasskeyReferenceTest {
    private static Decoder decoder;
    private static Tokenizer tokenizer;
    private static ModelDir dir;
    private static List<Passkey.Item> items;
    private static JsonNode reference;

    @BeforeAll
    static void load() throws Exception {
        dir = ModelDir.open(Shared.require("models/passkey-char-llama"));
        Path data = Shared.require("data/passkey/test.jsonl");
        reference = new ObjectMapper().readTree(Shared.require("data/passkey/reference-accuracy.json").toFile())
                .path("accuracy");
        items = Passkey.read(data, 0, 150);
        decoder = Runtimes.discover().get("onnx").open(dir, "cpu");
        tokenizer = Tokenizers.load(dir);
    }

    @AfterAll
    static void close() {
        if (decoder != null) {
            decoder.close();
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"fp, 0, 0", "pertoken_k8v8, 8, 8", "pertoken_k4v4, 4, 4", "pertoken_k4v2, 4, 2",
        "pertoken_k2v2, 2, 2", "kivi_k4v2, 4, 2", "kivi_k2v4, 2, 4"})
    void reproducesTheReferenceCache(String key, int keyBits, int valueBits) {
        CacheFactory caches;
        if (key.equals("fp")) {
            caches = CacheFactory.fullPrecision(dir.config().shape());
        } else {
            KvQuantConfig.Builder b = key.startsWith("kivi") ? KvQuantConfig.kivi(keyBits, valueBits)
                    : KvQuantConfig.perToken(keyBits, valueBits);
            caches = CacheFactory.quantized(KvCaches.spec(b.policy(CachePolicy.KVTUNER).build(), dir.config().shape()));
        }
        Passkey.Result r = Passkey.run(decoder, tokenizer, caches, items, 25, Progress.none());
        int expected = (int) Math.round(reference.path(key).asDouble() * items.size());
        System.out.printf("%s: %d/%d correct, reference %d%n", key, r.correct(), r.n(), expected);
        assertTrue(Math.abs(r.correct() - expected) <= 2, key + ": " + r.correct() + " correct, reference " + expected);
    }
}
