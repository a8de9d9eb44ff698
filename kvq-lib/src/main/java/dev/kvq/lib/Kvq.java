package dev.kvq.lib;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.LikelihoodEval;
import dev.kvq.eval.Progress;
import dev.kvq.eval.TextWindows;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.SamplingParams;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.UnknownChars;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.RuntimeOptions;
import dev.kvq.io.config.ConfigFiles;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A model with a quantized KV cache: kvq's entry point for Java programs.
 *
 * <pre>{@code
 * try (Kvq kvq = Kvq.open(Path.of("models/kvq-demo-char"), KvQuantConfig.kivi(4, 2).build())) {
 *     Generation g = kvq.generate("ROMEO:", GenerateOptions.greedy(200), (seq, token, text) -> System.out.print(text));
 *     Perplexity p = kvq.perplexity(someText, PerplexityOptions.defaults());
 * }
 * }</pre>
 *
 * The configuration ({@link KvQuantConfig}: built, read from a file, or the defaults) names the quantizer backend, the
 * runtime and the device; they are found by name, so switching from ONNX Runtime to DJL is a change of configuration.
 * A model directory holds {@code config.json}, the runtime's model file and a tokenizer. Every sequence gets its own
 * cache, made for the call and freed after it; closing frees the model. Not thread-safe: use one instance per thread.
 */
public final class Kvq implements AutoCloseable {
    private final ModelDir dir;
    private final KvQuantConfig config;
    private final CacheFactory caches;
    private final Decoder decoder;
    private final Tokenizer tokenizer;
    private boolean closed;

    private Kvq(Path model, KvQuantConfig config, boolean fullPrecision, int threads, UnknownChars unknown) {
        this.dir = ModelDir.open(model);
        this.config = config;
        // the cache configuration is checked against the model before the model is loaded
        this.caches = fullPrecision ? CacheFactory.fullPrecision(dir.config().shape())
                : CacheFactory.quantized(KvCaches.spec(config, dir.config().shape()));
        this.decoder = Runtimes.discover().get(config.runtime()).open(dir, new RuntimeOptions(config.device(), threads));
        try {
            this.tokenizer = Tokenizers.load(dir, unknown);
        } catch (RuntimeException e) {
            decoder.close();
            throw e;
        }
    }

    /** Opens {@code model} with the default configuration (KVTuner's defaults: 4-bit keys and values, vanilla). */
    public static Kvq open(Path model) {
        return builder(model).open();
    }

    /** Opens {@code model} with a KV cache configured by {@code config}. */
    public static Kvq open(Path model, KvQuantConfig config) {
        return builder(model).config(config).open();
    }

    /**
     * Opens {@code model} with the configuration in {@code configFile}: kvq's YAML or JSON, or a KVTuner per-layer or
     * per-head precision file as it is published.
     */
    public static Kvq open(Path model, Path configFile) {
        return builder(model).config(configFile).open();
    }

    /** More choices: a full-precision cache, runtime threads, what to do with characters a vocabulary lacks. */
    public static Builder builder(Path model) {
        return new Builder(model);
    }

    /** Choices for {@link #open()}. */
    public static final class Builder {
        private final Path model;
        private KvQuantConfig config = KvQuantConfig.builder().build();
        private boolean fullPrecision;
        private int threads;
        private UnknownChars unknown = UnknownChars.ERROR;

        private Builder(Path model) {
            this.model = model;
        }

        public Builder config(KvQuantConfig config) {
            this.config = config;
            return this;
        }

        public Builder config(Path configFile) {
            this.config = ConfigFiles.load(configFile);
            return this;
        }

        /** A float32 cache, no quantization (runtime and device still come from the configuration). */
        public Builder fullPrecision() {
            this.fullPrecision = true;
            return this;
        }

        /** Intra-op threads of the runtime; 0 (the default) lets it use every core. */
        public Builder threads(int threads) {
            this.threads = threads;
            return this;
        }

        /**
         * Maps characters a character vocabulary lacks to {@code replacement} instead of failing (the default fails,
         * naming the character and where it is).
         */
        public Builder replaceUnknownCharacters(String replacement) {
            this.unknown = UnknownChars.replaceWith(replacement);
            return this;
        }

        public Kvq open() {
            return new Kvq(model, config, fullPrecision, threads, unknown);
        }
    }

    /** The model, where it runs, and its cache. */
    public ModelInfo info() {
        var c = dir.config();
        return new ModelInfo(dir.name(), c.layers(), c.kvHeads(), c.headDim(), c.vocabSize(), c.maxPositions(),
                config.runtime(), decoder.device(), caches.describe(),
                caches.plan() == null ? 32 : caches.plan().averageBits());
    }

    /** Continues one prompt. */
    public Generation generate(String prompt, GenerateOptions options) {
        return generate(List.of(prompt), options, null);
    }

    /** Continues one prompt, handing each token to {@code listener} as it is chosen. */
    public Generation generate(String prompt, GenerateOptions options, TokenListener listener) {
        return generate(List.of(prompt), options, listener);
    }

    /**
     * Continues every prompt as one batch (left-padded, a cache per sequence); {@code listener} (may be null) gets each
     * token with its prompt's index.
     */
    public Generation generate(List<String> prompts, GenerateOptions options, TokenListener listener) {
        checkOpen();
        Generator.Options o = new Generator.Options(options.maxNewTokens(), new SamplingParams(options.temperature(),
                options.topK(), options.topP(), options.seed()), options.stopStrings());
        Generator.Output out = new Generator(decoder, tokenizer, caches).generate(prompts, o,
                listener == null ? null : listener::onToken);
        List<Generation.Completion> completions = new ArrayList<>();
        for (Generator.Result r : out.results()) {
            completions.add(new Generation.Completion(r.prompt(), r.text(), r.tokens(), r.stopReason()));
        }
        return new Generation(completions, out.stats().kvBytes(), out.stats().kvBytesFp16(),
                out.stats().prefillMillis(), out.stats().decodeTokensPerSecond());
    }

    /**
     * Perplexity of {@code text} through the cache (and, as the options say, beside full precision), over every whole
     * window the text holds.
     */
    public Perplexity perplexity(String text, PerplexityOptions options) {
        checkOpen();
        List<int[]> windows = TextWindows.of(tokenizer, text, 0, 0, options.window());
        LikelihoodEval.Result r = LikelihoodEval.run(decoder, caches, windows, new LikelihoodEval.Options(
                options.prefill(), options.batch(), options.compareFullPrecision()), Progress.none());
        return new Perplexity(r.ppl(), r.fpPpl(), r.meanKl(), r.top1Agreement(), r.tokens(), r.windows(),
                r.peakKvBytes());
    }

    /** Frees the model and tokenizer; idempotent. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            try {
                decoder.close();
            } finally {
                tokenizer.close();
            }
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new KvqException(ErrorCode.CLOSED, "this Kvq was closed");
        }
    }
}
