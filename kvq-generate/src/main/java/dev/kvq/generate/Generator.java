package dev.kvq.generate;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.List;

/**
 * Text generation through the KV cache: tokenizes the prompts, prefills them as one left-padded batch, then
 * decodes one token per sequence per step until each reaches its new-token limit, a stop string or an end token.
 */
public final class Generator {
    /** Receives text as it is generated. */
    @FunctionalInterface
    public interface Listener {
        void onText(int sequence, String delta);
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
        List<KvCache> perSequence = new ArrayList<>(batch);
        for (int b = 0; b < batch; b++) {
            perSequence.add(caches.newCache());
        }
        List<Integer> eos = decoder.config().eosTokenIds();
        Sampler[] samplers = new Sampler[batch];
        List<List<Integer>> generated = new ArrayList<>();
        String[] text = new String[batch];
        String[] stop = new String[batch];
        for (int b = 0; b < batch; b++) {
            samplers[b] = new Sampler(options.sampling(), b);
            generated.add(new ArrayList<>());
            text[b] = "";
        }
        int maxStop = options.stopStrings().stream().mapToInt(String::length).max().orElse(0);
        try (DecodeSession session = new DecodeSession(decoder, perSequence, caches.placement())) {
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
                    next[b] = new int[0];
                    if (stop[b] != null || logits[b].length == 0) {
                        continue;
                    }
                    int token = samplers[b].next(logits[b][0]);
                    produced++;
                    if (eos.contains(token)) {
                        stop[b] = "eos";
                        continue;
                    }
                    generated.get(b).add(token);
                    String full = tokenizer.decode(generated.get(b).stream().mapToInt(Integer::intValue).toArray());
                    String delta = full.startsWith(text[b]) ? full.substring(text[b].length()) : full;
                    String cut = stopAt(full, text[b].length(), maxStop, options.stopStrings());
                    if (cut != null) {
                        stop[b] = "stop";
                        if (cut.length() > text[b].length() && listener != null) {
                            listener.onText(b, cut.substring(text[b].length()));
                        }
                        text[b] = cut;
                        continue;
                    }
                    text[b] = full;
                    if (listener != null && !delta.isEmpty()) {
                        listener.onText(b, delta);
                    }
                    if (generated.get(b).size() >= options.maxNewTokens()) {
                        stop[b] = "length";
                        continue;
                    }
                    next[b] = new int[] {token};
                    any = true;
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
                results.add(new Result(prompts.get(b), text[b],
                        generated.get(b).stream().mapToInt(Integer::intValue).toArray(), promptIds[b].length, stop[b]));
            }
            return new Output(results, new Stats(prefill, decode, steps, produced, produced - fromPrefill,
                    session.bytesHeld(), session.bytesFp16(), session.timings()));
        }
    }

    private static String stopAt(String full, int previousLength, int maxStop, List<String> stops) {
        if (stops.isEmpty()) {
            return null;
        }
        int from = Math.max(0, previousLength - maxStop);
        int best = -1;
        for (String s : stops) {
            int i = full.indexOf(s, from);
            if (i >= 0 && (best < 0 || i < best)) {
                best = i;
            }
        }
        return best < 0 ? null : full.substring(0, best);
    }
}
