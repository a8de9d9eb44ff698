package dev.kvq.tuner;

import dev.kvq.KvqException;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.Gsm8k;
import dev.kvq.eval.LikelihoodEval;
import dev.kvq.eval.Passkey;
import dev.kvq.eval.Progress;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.UnknownChars;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.RuntimeOptions;
import java.util.List;
import java.util.Locale;

/**
 * Scores a configuration on calibration data (lower is better); one instance per worker thread, each with its own
 * decoder, since a decoder is not thread-safe.
 */
public final class Evaluator implements Scorer {
    /** What the search optimizes. */
    public enum Objective {
        /** Perplexity of text windows (minimize). */
        PPL,
        /** Mean next-token KL against full precision (minimize). */
        KL,
        /** Passkey accuracy (maximize). */
        PASSKEY,
        /** GSM8K accuracy (maximize). */
        GSM8K;

        public static Objective parse(String s) {
            try {
                return valueOf(s.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw KvqException.config("objective must be ppl, kl, passkey or gsm8k, was '" + s + "'");
            }
        }

        /** Whether the metric is an accuracy (reported as is, optimized negated). */
        public boolean accuracy() {
            return this == PASSKEY || this == GSM8K;
        }
    }

    /** The calibration data of an objective. */
    public record Data(List<int[]> windows, int prefill, List<Passkey.Item> passkey, List<Gsm8k.Example> shots,
                       List<Gsm8k.Example> problems) {
    }

    private final ModelDir dir;
    private final Decoder decoder;
    private final Tokenizer tokenizer;
    private final Objective objective;
    private final Data data;
    private final KlObjective kl;

    public Evaluator(ModelDir dir, String runtime, RuntimeOptions options, Objective objective, Data data) {
        this.dir = dir;
        this.decoder = Runtimes.discover().get(runtime).open(dir, options);
        this.tokenizer = Tokenizers.load(dir, UnknownChars.replaceWith(" "));
        this.objective = objective;
        this.data = data;
        this.kl = objective == Objective.KL ? new KlObjective(decoder, data.windows(), data.prefill()) : null;
    }

    /** The raw metric (perplexity, KL, or accuracy). */
    public double metric(KvQuantConfig config) {
        CacheFactory caches = config == null ? CacheFactory.fullPrecision(dir.config().shape())
                : CacheFactory.quantized(KvCaches.spec(config, dir.config().shape()));
        return switch (objective) {
            case PPL -> LikelihoodEval.run(decoder, caches, data.windows(), new LikelihoodEval.Options(data.prefill(),
                    data.windows().size(), false), Progress.none()).ppl();
            case KL -> kl.meanKl(caches);
            case PASSKEY -> Passkey.run(decoder, tokenizer, caches, data.passkey(), 25, Progress.none()).accuracy();
            case GSM8K -> Gsm8k.run(decoder, tokenizer, caches, data.shots(), data.problems(), 256, 8,
                    Progress.none()).accuracy();
        };
    }

    /** The value the search minimizes. */
    @Override
    public double score(KvQuantConfig config) {
        double m = metric(config);
        return objective.accuracy() ? -m : m;
    }

    @Override
    public void close() {
        decoder.close();
        tokenizer.close();
    }
}
