package dev.kvq.tuner;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.CacheSpec;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.ModelShape;
import dev.kvq.eval.Progress;
import dev.kvq.eval.TextWindows;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.io.config.ConfigFiles;
import dev.kvq.tensor.KvView;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * KVTuner's offline calibration on one model. For every layer and candidate pair: the relative error of the layer's
 * attention output {@code softmax(q K^T / sqrt(d)) V} when only that layer's K and V go through the quantized cache
 * (queries, keys and values from the model on calibration text, via {@link LlamaProbe}); the same with only keys and
 * only values quantized; and, optionally, the mean next-token KL of the whole model with only that layer quantized.
 * Then the search space is pruned ({@link SearchSpace}).
 */
public final class Calibration {
    private Calibration() {
    }

    /**
     * @param scheme per-token-asym or per-channel-asym
     * @param backend quantizer backend
     * @param policy cache policy the candidates run under
     * @param window tokens per calibration window
     * @param windows at most this many windows for the attention errors
     * @param klWindows windows for the end-to-end KL (0 skips it)
     * @param prefill prompt tokens per window for the KL
     * @param groups layer groups of the pruned space
     * @param pairs candidate pairs
     */
    public record Options(String scheme, String backend, CachePolicy policy, int window, int windows, int klWindows,
                          int prefill, int groups, List<Pair> pairs) {
    }

    public static Profile run(ModelDir dir, Decoder decoder, Tokenizer tokenizer, String text, int offset, int length,
                              Options o, Progress progress) {
        LlamaProbe probe = new LlamaProbe(dir);
        ModelShape shape = dir.config().shape();
        int heads = dir.config().attentionHeads();
        int kvHeads = shape.kvHeads();
        int d = shape.headDim();
        List<int[]> all = TextWindows.of(tokenizer, text, offset, length, o.window());
        List<int[]> windows = all.subList(0, Math.min(o.windows(), all.size()));
        KvQuantConfig base = Schemes.base(o.scheme(), o.backend(), d, o.policy()).build();

        int layers = shape.layers();
        double[][][] num = new double[layers][o.pairs().size()][3];
        double[][] den = new double[layers][1];
        ModelShape one = new ModelShape(1, kvHeads, d);
        Map<Pair, CacheSpec> specs = new LinkedHashMap<>();
        for (Pair p : o.pairs()) {
            specs.put(p, KvCaches.spec(base.toBuilder().bits(p.keyBits(), p.valueBits()).build(), one));
        }
        try (Progress.Task task = progress.start("calibrate: attention", windows.size())) {
            for (int[] w : windows) {
                LlamaProbe.LayerQkv[] qkv = probe.forward(w, null);
                int t = w.length;
                for (int l = 0; l < layers; l++) {
                    float[] q = qkv[l].q();
                    float[] k = qkv[l].k();
                    float[] v = qkv[l].v();
                    float[] ref = LlamaProbe.attention(q, k, v, heads, kvHeads, t, d);
                    den[l][0] += squares(ref);
                    for (int pi = 0; pi < o.pairs().size(); pi++) {
                        float[][] kv = roundTrip(specs.get(o.pairs().get(pi)), k, v, kvHeads, t, d);
                        num[l][pi][0] += diff(ref, LlamaProbe.attention(q, kv[0], kv[1], heads, kvHeads, t, d));
                        num[l][pi][1] += diff(ref, LlamaProbe.attention(q, kv[0], v, heads, kvHeads, t, d));
                        num[l][pi][2] += diff(ref, LlamaProbe.attention(q, k, kv[1], heads, kvHeads, t, d));
                    }
                }
                task.step(1);
            }
        }
        Double[][] kl = new Double[layers][o.pairs().size()];
        if (o.klWindows() > 0 && decoder != null) {
            List<int[]> klText = all.subList(0, Math.min(o.klWindows(), all.size()));
            KlObjective klObjective = new KlObjective(decoder, klText, o.prefill());
            try (Progress.Task task = progress.start("calibrate: KL", (long) layers * o.pairs().size())) {
                for (int l = 0; l < layers; l++) {
                    for (int pi = 0; pi < o.pairs().size(); pi++) {
                        CacheSpec spec = specs.get(o.pairs().get(pi));
                        int layer = l;
                        CacheFactory mix = new CacheFactory() {
                            @Override
                            public KvCache newCache() {
                                return new LayerMixCache(shape, layer, spec.newCache());
                            }

                            @Override
                            public dev.kvq.config.PrecisionPlan plan() {
                                return null;
                            }

                            @Override
                            public String describe() {
                                return "layer " + layer + " only";
                            }
                        };
                        kl[l][pi] = klObjective.meanKl(mix);
                        task.step(1);
                    }
                }
            }
        }
        List<Profile.LayerProfile> out = new ArrayList<>();
        double keyOnly2 = 0;
        double valueOnly2 = 0;
        for (int l = 0; l < layers; l++) {
            Map<String, Profile.Errors> errors = new LinkedHashMap<>();
            Map<String, Double> attention = new LinkedHashMap<>();
            for (int pi = 0; pi < o.pairs().size(); pi++) {
                Pair p = o.pairs().get(pi);
                double a = Math.sqrt(num[l][pi][0] / den[l][0]);
                double ko = Math.sqrt(num[l][pi][1] / den[l][0]);
                double vo = Math.sqrt(num[l][pi][2] / den[l][0]);
                errors.put(p.name(), new Profile.Errors(a, ko, vo, kl[l][pi]));
                attention.put(p.name(), a);
                if (p.keyBits() == 2 && p.valueBits() == 2) {
                    keyOnly2 += ko / layers;
                    valueOnly2 += vo / layers;
                }
            }
            out.add(new Profile.LayerProfile(l, errors, SearchSpace.keep(errors)));
        }
        Map<String, Object> keysVsValues = new LinkedHashMap<>();
        keysVsValues.put("mean_key_only_error_at_2_bits", keyOnly2);
        keysVsValues.put("mean_value_only_error_at_2_bits", valueOnly2);
        keysVsValues.put("keys_matter_more_by_attention_error", keyOnly2 > valueOnly2);
        int k2v8 = o.pairs().indexOf(new Pair(2, 8));
        int k8v2 = o.pairs().indexOf(new Pair(8, 2));
        if (kl[0][0] != null && k2v8 >= 0 && k8v2 >= 0) {
            double keyKl = 0;
            double valueKl = 0;
            for (int l = 0; l < layers; l++) {
                keyKl += kl[l][k2v8] / layers;
                valueKl += kl[l][k8v2] / layers;
            }
            keysVsValues.put("mean_kl_K2V8", keyKl);
            keysVsValues.put("mean_kl_K8V2", valueKl);
            keysVsValues.put("keys_matter_more_by_kl", keyKl > valueKl);
        }
        Map<String, Object> calibration = new LinkedHashMap<>();
        calibration.put("offset", offset);
        calibration.put("length", length);
        calibration.put("window", o.window());
        calibration.put("windows", windows.size());
        calibration.put("kl_windows", o.klWindows() > 0 && decoder != null ? Math.min(o.klWindows(), all.size()) : 0);
        calibration.put("prefill", o.prefill());
        return new Profile(dir.name(), Schemes.canonical(o.scheme()), ConfigFiles.toMap(base), calibration, out,
                SearchSpace.groups(out, o.groups()), keysVsValues);
    }

    /** K and V through a one-layer quantized cache: appended as a prefill, then materialized. */
    static float[][] roundTrip(CacheSpec spec, float[] k, float[] v, int heads, int t, int d) {
        float[] kk = new float[k.length];
        float[] vv = new float[v.length];
        try (KvCache cache = spec.newCache()) {
            cache.append(0, KvView.of(k, heads, t, d), KvView.of(v, heads, t, d));
            cache.materialize(0, KvView.of(kk, heads, t, d), KvView.of(vv, heads, t, d));
        }
        return new float[][] {kk, vv};
    }

    private static double squares(float[] x) {
        double s = 0;
        for (float f : x) {
            s += f * (double) f;
        }
        return s;
    }

    private static double diff(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            double e = a[i] - b[i];
            s += e * e;
        }
        return s;
    }
}
