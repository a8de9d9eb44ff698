package dev.kvq.tuner;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.quantized.FullPrecisionKvCache;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.tensor.KvView;
import dev.kvq.testkit.Repo;
import java.nio.file.Files;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The Java probe computes what the exported model computes: keys, values and logits match ONNX Runtime's. */
class LlamaProbeTest {
    @Test
    void matchesTheOnnxExport() throws Exception {
        ModelDir dir = ModelDir.open(Repo.demoModel());
        LlamaProbe probe = new LlamaProbe(dir);
        int kvHeads = dir.config().kvHeads();
        int d = dir.config().headDim();
        try (Tokenizer tok = Tokenizers.load(dir); Decoder decoder = Runtimes.discover().get("onnx").open(dir, "cpu")) {
            int[] ids = tok.encode(Files.readString(Repo.demoText()).substring(0, 60));
            int t = ids.length;
            float[] logits = new float[t * dir.config().vocabSize()];
            LlamaProbe.LayerQkv[] qkv = probe.forward(ids, logits);
            FullPrecisionKvCache cache = new FullPrecisionKvCache(dir.config().shape());
            try (DecodeSession s = new DecodeSession(decoder, List.of(cache))) {
                float[][] onnx = s.feed(new int[][] {ids}, true)[0];
                double logitDiff = 0;
                for (int i = 0; i < t; i++) {
                    for (int v = 0; v < onnx[i].length; v++) {
                        logitDiff = Math.max(logitDiff, Math.abs(onnx[i][v] - logits[i * onnx[i].length + v]));
                    }
                }
                double kvDiff = 0;
                for (int l = 0; l < dir.config().layers(); l++) {
                    float[] k = new float[kvHeads * t * d];
                    float[] v = new float[k.length];
                    cache.materialize(l, KvView.of(k, kvHeads, t, d), KvView.of(v, kvHeads, t, d));
                    for (int i = 0; i < k.length; i++) {
                        kvDiff = Math.max(kvDiff, Math.max(Math.abs(k[i] - qkv[l].k()[i]), Math.abs(v[i] - qkv[l].v()[i])));
                    }
                }
                System.out.printf("probe vs ONNX: max |logit diff| %.2e, max |K/V diff| %.2e%n", logitDiff, kvDiff);
                assertTrue(logitDiff < 1e-3, "logits differ by " + logitDiff);
                assertTrue(kvDiff < 1e-3, "K/V differ by " + kvDiff);
            }
        }
    }
}
