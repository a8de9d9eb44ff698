package dev.kvq.generate;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.List;

/**
 * Text generation through the KV cache: tokenizes the prompts, prefills them as one left-padded batch, then
 * decodes one token per sequence per step until each reaches its new-token limit, a stop string or an end token.
 */
public final class Generator {
    /** Receives each generated token as it is chosen. */
    @FunctionalInterface
    public interface Listener {
        /**
         * Called once per generated token, the end token included. The pieces of text add up to the result's text:
         * a piece is empty while the token ends inside a character or might begin a stop string (that text comes
         * with a later token), and nothing of a stop string is ever given.
         *
         * @param sequence the prompt's index
         * @param token the token id
         * @param text the text given with this token
         */
        void onToken(int sequence, int token, String text);
    }

    /** Limits and sampling of one generation. */
    public record Options(int maxNewTokens, SamplingParams sampling, List<String> stopStrings) {
        public Options {
            if (maxNewTokens < 1) {
                throw KvqException.config("max new tokens must be at least 1, was " + maxNewTokens);
            }
            stopStrings = List.copyOf(stopStrings);
        }

        public static Options greedy(int maxNewTokens) {
            return new Options(maxNewTokens, SamplingParams.greedy(), List.of());
        }
    }

    /** The outcome for one prompt. */
    public record Result(String prompt, String text, int[] tokens, int promptTokens, String stopReason) {
    }

    /** Timings and memory of one generate call. */
    public record Stats(long prefillNanos, long decodeNanos, int decodeSteps, int newTokens, int decodeTokens,
                        long kvBytes, long kvBytesFp16, DecodeSession.Timings phases) {
        public double prefillMillis() {
            return prefillNanos / 1e6;
        }

        /** Tokens sampled from decode-step logits, per second of decode time, all sequences together. */
        public double decodeTokensPerSecond() {
            return decodeNanos == 0 ? 0 : decodeTokens / (decodeNanos / 1e9);
        }
    }

    /** Results and stats. */
    public record Output(List<Result> results, Stats stats) {
    }

    private final Decoder decoder;
    private final Tokenizer tokenizer;
    private final CacheFactory caches;

    public Generator(Decoder decoder, Tokenizer tokenizer, CacheFactory caches) {
        this.decoder = decoder;
        this.tokenizer = tokenizer;
        this.caches = caches;
    }

    public Output generate(List<String> prompts, Options options, Listener listener) {
        if (prompts.isEmpty()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "no prompt given");
        }
        int batch = prompts.size();
        int[][] promptIds = new int[batch][];
        for (int b = 0; b < batch; b++) {
            promptIds[b] = tokenizer.encode(prompts.get(b));
            if (promptIds[b].length == 0) {
                throw KvqException.config("prompt " + b + " is empty after tokenization");
            }
        }
        int[] eos = decoder.config().eosTokenIds().stream().mapToInt(Integer::intValue).toArray();
        Continuation[] sequences = new Continuation[batch];
        for (int b = 0; b < batch; b++) {
            sequences[b] = new Continuation(options, b, tokenizer.textStream(), eos);
        }
        try (DecodeSession session = caches.session(decoder, batch)) {
            session.reserve(java.util.Arrays.stream(promptIds).mapToInt(p -> p.length).max().orElse(0)
                    + options.maxNewTokens());
            long start = System.nanoTime();
            float[][][] logits = session.feed(promptIds, false);
            long prefill = System.nanoTime() - start;
            int steps = 0;
            int produced = 0;
            int fromPrefill = -1;
            long decodeStart = System.nanoTime();
            int[][] next = new int[batch][];
            while (true) {
                boolean any = false;
                for (int b = 0; b < batch; b++) {
                    Continuation s = sequences[b];
                    next[b] = NOTHING;
                    if (s.done() || logits[b].length == 0) {
                        continue;
                    }
                    produced++;
                    if (s.accept(logits[b][0], listener, b)) {
                        next[b] = s.next();
                        any = true;
                    }
                }
                if (fromPrefill < 0) {
                    fromPrefill = produced;
                }
                if (!any) {
                    break;
                }
                logits = session.feed(next, false);
                steps++;
            }
            long decode = System.nanoTime() - decodeStart;
            List<Result> results = new ArrayList<>(batch);
            for (int b = 0; b < batch; b++) {
                Continuation s = sequences[b];
                results.add(new Result(prompts.get(b), s.text(), s.tokens(), promptIds[b].length, s.stopReason()));
            }
            return new Output(results, new Stats(prefill, decode, steps, produced, produced - fromPrefill,
                    session.bytesHeld(), session.bytesFp16(), session.timings()));
        }
    }

    private static final int[] NOTHING = new int[0];
}
