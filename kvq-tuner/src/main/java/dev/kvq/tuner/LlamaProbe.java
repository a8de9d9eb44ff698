package dev.kvq.tuner;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.model.ModelConfig;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.io.safetensors.SafeTensors;
import dev.kvq.spi.VectorSupport;

/**
 * A plain-Java forward pass of a Llama-architecture decoder (RMSNorm, rotary embeddings in the rotate-half layout,
 * grouped-query attention, SwiGLU) from {@code model.safetensors} with Hugging Face names. Calibration needs the
 * queries of every layer, which a decoder exported with external KV does not output; this probe computes them, with
 * the keys and values, from the same weights. Single sequence, float32.
 */
public final class LlamaProbe {
    private static final boolean SIMD = VectorSupport.enabled();

    /** Queries {@code [heads, T, D]}, keys and values {@code [kvHeads, T, D]} of one layer (after rotary embedding). */
    public record LayerQkv(float[] q, float[] k, float[] v) {
    }

    private final ModelConfig c;
    private final float[] embed;
    private final float[] finalNorm;
    private final float[] lmHead;
    private final Layer[] layers;
    private final float[] invFreq;
    private final float eps;

    private record Layer(float[] inNorm, float[] postNorm, float[] wq, float[] wk, float[] wv, float[] wo, float[] gate,
                         float[] up, float[] down) {
    }

    public LlamaProbe(ModelDir dir) {
        this.c = dir.config();
        if (!dir.has("model.safetensors")) {
            throw new KvqException(ErrorCode.MODEL_INVALID, dir.root() + " has no model.safetensors; calibration runs a "
                    + "Java forward pass of the Llama architecture from the Hugging Face weights to get each layer's "
                    + "queries, which the ONNX/TorchScript exports do not output");
        }
        if (!c.modelType().equals("llama") && !c.modelType().equals("mistral") && !c.modelType().equals("qwen2")) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "calibration supports Llama-architecture models (llama, "
                    + "mistral, qwen2 without biases), not model_type '" + c.modelType() + "'");
        }
        this.eps = (float) readEps(dir);
        try (SafeTensors st = SafeTensors.open(dir.root().resolve("model.safetensors"))) {
            embed = st.tensor("model.embed_tokens.weight").floats();
            finalNorm = st.tensor("model.norm.weight").floats();
            lmHead = st.contains("lm_head.weight") ? st.tensor("lm_head.weight").floats() : embed;
            layers = new Layer[c.layers()];
            for (int l = 0; l < c.layers(); l++) {
                String p = "model.layers." + l + ".";
                layers[l] = new Layer(st.tensor(p + "input_layernorm.weight").floats(),
                        st.tensor(p + "post_attention_layernorm.weight").floats(),
                        st.tensor(p + "self_attn.q_proj.weight").floats(), st.tensor(p + "self_attn.k_proj.weight").floats(),
                        st.tensor(p + "self_attn.v_proj.weight").floats(), st.tensor(p + "self_attn.o_proj.weight").floats(),
                        st.tensor(p + "mlp.gate_proj.weight").floats(), st.tensor(p + "mlp.up_proj.weight").floats(),
                        st.tensor(p + "mlp.down_proj.weight").floats());
            }
        }
        double theta = readTheta(dir);
        int half = c.headDim() / 2;
        invFreq = new float[half];
        for (int i = 0; i < half; i++) {
            invFreq[i] = (float) (1.0 / Math.pow(theta, (2.0 * i) / c.headDim()));
        }
    }

    private static double readTheta(ModelDir dir) {
        return readNumber(dir, "rope_theta", 10000.0);
    }

    private static double readEps(ModelDir dir) {
        return readNumber(dir, "rms_norm_eps", 1e-5);
    }

    private static double readNumber(ModelDir dir, String field, double fallback) {
        try {
            var n = new com.fasterxml.jackson.databind.ObjectMapper().readTree(dir.root().resolve("config.json").toFile());
            return n.path(field).asDouble(fallback);
        } catch (java.io.IOException e) {
            return fallback;
        }
    }

    public ModelConfig config() {
        return c;
    }

    /**
     * Runs the model over {@code tokens} (positions 0..T-1) and returns every layer's queries, keys and values;
     * {@code logits} (T x vocab) is filled when non-null.
     */
    public LayerQkv[] forward(int[] tokens, float[] logits) {
        int t = tokens.length;
        int hidden = c.hiddenSize();
        int heads = c.attentionHeads();
        int kvHeads = c.kvHeads();
        int d = c.headDim();
        float[] h = new float[t * hidden];
        for (int i = 0; i < t; i++) {
            System.arraycopy(embed, tokens[i] * hidden, h, i * hidden, hidden);
        }
        LayerQkv[] out = new LayerQkv[c.layers()];
        float[] xn = new float[t * hidden];
        for (int l = 0; l < c.layers(); l++) {
            Layer w = layers[l];
            rmsNorm(h, w.inNorm(), xn, t, hidden);
            float[] q = headMajor(linear(xn, w.wq(), t, hidden, heads * d), t, heads, d);
            float[] k = headMajor(linear(xn, w.wk(), t, hidden, kvHeads * d), t, kvHeads, d);
            float[] v = headMajor(linear(xn, w.wv(), t, hidden, kvHeads * d), t, kvHeads, d);
            rope(q, heads, t, d);
            rope(k, kvHeads, t, d);
            out[l] = new LayerQkv(q, k, v);
            float[] attn = tokenMajor(attention(q, k, v, heads, kvHeads, t, d), t, heads, d);
            float[] o = linear(attn, w.wo(), t, heads * d, hidden);
            for (int i = 0; i < h.length; i++) {
                h[i] += o[i];
            }
            rmsNorm(h, w.postNorm(), xn, t, hidden);
            int inter = w.gate().length / hidden;
            float[] g = linear(xn, w.gate(), t, hidden, inter);
            float[] u = linear(xn, w.up(), t, hidden, inter);
            for (int i = 0; i < g.length; i++) {
                float x = g[i];
                g[i] = x / (1f + (float) Math.exp(-x)) * u[i];
            }
            float[] m = linear(g, w.down(), t, inter, hidden);
            for (int i = 0; i < h.length; i++) {
                h[i] += m[i];
            }
        }
        if (logits != null) {
            rmsNorm(h, finalNorm, xn, t, hidden);
            float[] lg = linear(xn, lmHead, t, hidden, c.vocabSize());
            System.arraycopy(lg, 0, logits, 0, lg.length);
        }
        return out;
    }

    /**
     * Causal softmax attention {@code softmax(q k^T / sqrt(D)) v} per query head, with query head h reading KV head
     * {@code h / (heads / kvHeads)}; returns {@code [heads, T, D]}.
     */
    public static float[] attention(float[] q, float[] k, float[] v, int heads, int kvHeads, int t, int d) {
        float[] out = new float[heads * t * d];
        int group = heads / kvHeads;
        float scale = (float) (1.0 / Math.sqrt(d));
        float[] scores = new float[t];
        for (int hq = 0; hq < heads; hq++) {
            int hk = hq / group;
            for (int i = 0; i < t; i++) {
                int qo = (hq * t + i) * d;
                float max = Float.NEGATIVE_INFINITY;
                for (int j = 0; j <= i; j++) {
                    scores[j] = dot(q, qo, k, (hk * t + j) * d, d) * scale;
                    max = Math.max(max, scores[j]);
                }
                float sum = 0;
                for (int j = 0; j <= i; j++) {
                    scores[j] = (float) Math.exp(scores[j] - max);
                    sum += scores[j];
                }
                int oo = (hq * t + i) * d;
                for (int j = 0; j <= i; j++) {
                    float p = scores[j] / sum;
                    int vo = (hk * t + j) * d;
                    for (int x = 0; x < d; x++) {
                        out[oo + x] += p * v[vo + x];
                    }
                }
            }
        }
        return out;
    }

    private void rope(float[] x, int heads, int t, int d) {
        int half = d / 2;
        for (int h = 0; h < heads; h++) {
            for (int p = 0; p < t; p++) {
                int o = (h * t + p) * d;
                for (int i = 0; i < half; i++) {
                    float angle = p * invFreq[i];
                    float cos = (float) Math.cos(angle);
                    float sin = (float) Math.sin(angle);
                    float a = x[o + i];
                    float b = x[o + i + half];
                    x[o + i] = a * cos - b * sin;
                    x[o + i + half] = b * cos + a * sin;
                }
            }
        }
    }

    private void rmsNorm(float[] x, float[] weight, float[] out, int t, int n) {
        for (int i = 0; i < t; i++) {
            double ss = 0;
            for (int j = 0; j < n; j++) {
                float v = x[i * n + j];
                ss += v * v;
            }
            float r = (float) (1.0 / Math.sqrt(ss / n + eps));
            for (int j = 0; j < n; j++) {
                out[i * n + j] = weight[j] * (x[i * n + j] * r);
            }
        }
    }

    /** {@code x [t, in] @ w^T} with {@code w [out, in]} (PyTorch's Linear). */
    private static float[] linear(float[] x, float[] w, int t, int in, int outDim) {
        float[] y = new float[t * outDim];
        for (int i = 0; i < t; i++) {
            for (int o = 0; o < outDim; o++) {
                y[i * outDim + o] = dot(x, i * in, w, o * in, in);
            }
        }
        return y;
    }

    private static float dot(float[] a, int ao, float[] b, int bo, int n) {
        if (SIMD) {
            return DotSimd.dot(a, ao, b, bo, n);
        }
        float s = 0;
        for (int i = 0; i < n; i++) {
            s += a[ao + i] * b[bo + i];
        }
        return s;
    }

    /** {@code [t, heads*d]} to {@code [heads, t, d]}. */
    private static float[] headMajor(float[] x, int t, int heads, int d) {
        float[] y = new float[x.length];
        for (int i = 0; i < t; i++) {
            for (int h = 0; h < heads; h++) {
                System.arraycopy(x, (i * heads + h) * d, y, (h * t + i) * d, d);
            }
        }
        return y;
    }

    private static float[] tokenMajor(float[] x, int t, int heads, int d) {
        float[] y = new float[x.length];
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < t; i++) {
                System.arraycopy(x, (h * t + i) * d, y, (i * heads + h) * d, d);
            }
        }
        return y;
    }
}
