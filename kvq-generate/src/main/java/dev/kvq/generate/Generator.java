package dev.kvq.generate;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.Arrays;
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
        Sequence[] sequences = new Sequence[batch];
        for (int b = 0; b < batch; b++) {
            sequences[b] = new Sequence(new Sampler(options.sampling(), b), tokenizer.textStream(),
                    Math.min(options.maxNewTokens(), 1024));
        }
        int maxStop = options.stopStrings().stream().mapToInt(String::length).max().orElse(0);
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
                    Sequence s = sequences[b];
                    next[b] = NOTHING;
                    if (s.stopReason != null || logits[b].length == 0) {
                        continue;
                    }
                    int token = s.sampler.next(logits[b][0]);
                    produced++;
                    if (contains(eos, token)) {
                        s.stopReason = "eos";
                        s.emit(listener, b, token, s.text.length(), "");
                        continue;
                    }
                    s.add(token);
                    String piece = s.stream.next(token);
                    int before = s.text.length();
                    s.text.append(piece);
                    int cut = stopAt(s.text, before, maxStop, options.stopStrings());
                    if (cut >= 0) {
                        s.stopReason = "stop";
                        s.text.setLength(cut);
                        s.emit(listener, b, token, cut, piece);
                        continue;
                    }
                    if (s.count >= options.maxNewTokens()) {
                        s.stopReason = "length";
                        s.emit(listener, b, token, s.text.length(), piece);
                        continue;
                    }
                    // text that may be the start of a stop string waits until the next tokens decide
                    s.emit(listener, b, token, s.text.length() - stopPrefixAtEnd(s.text, options.stopStrings()), piece);
                    s.last[0] = token;
                    next[b] = s.last;
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
                Sequence s = sequences[b];
                results.add(new Result(prompts.get(b), s.text.toString(), Arrays.copyOf(s.tokens, s.count),
                        promptIds[b].length, s.stopReason));
            }
            return new Output(results, new Stats(prefill, decode, steps, produced, produced - fromPrefill,
                    session.bytesHeld(), session.bytesFp16(), session.timings()));
        }
    }

    private static final int[] NOTHING = new int[0];

    /** One sequence's state while it decodes: everything a step touches is kept here and reused. */
    private static final class Sequence {
        final Sampler sampler;
        final Tokenizer.TextStream stream;
        final StringBuilder text = new StringBuilder();
        /** The token fed at the next step, as the one-token row the session takes. */
        final int[] last = new int[1];
        int[] tokens;
        int count;
        /** Characters of {@link #text} the listener has been given. */
        int emitted;
        String stopReason;

        Sequence(Sampler sampler, Tokenizer.TextStream stream, int capacity) {
            this.sampler = sampler;
            this.stream = stream;
            this.tokens = new int[Math.max(capacity, 1)];
        }

        /**
         * Gives the listener, with {@code token}, the text up to {@code end} not given yet (possibly none); when that
         * is exactly the token's own {@code piece}, the piece itself, so streaming a tokenizer's strings copies nothing.
         */
        void emit(Listener listener, int sequence, int token, int end, String piece) {
            if (listener != null) {
                boolean own = end == text.length() && emitted == end - piece.length();
                listener.onToken(sequence, token, own ? piece : end > emitted ? text.substring(emitted, end) : "");
            }
            emitted = Math.max(emitted, end);
        }

        void add(int token) {
            if (count == tokens.length) {
                tokens = Arrays.copyOf(tokens, 2 * count);
            }
            tokens[count++] = token;
        }
    }

    private static boolean contains(int[] ids, int id) {
        for (int i : ids) {
            if (i == id) {
                return true;
            }
        }
        return false;
    }

    /** Length of the longest end of {@code text} that begins a stop string (and so may yet become one). */
    private static int stopPrefixAtEnd(StringBuilder text, List<String> stops) {
        int best = 0;
        for (String s : stops) {
            for (int k = Math.min(s.length() - 1, text.length()); k > best; k--) {
                if (endsWith(text, s, k)) {
                    best = k;
                    break;
                }
            }
        }
        return best;
    }

    private static boolean endsWith(StringBuilder text, String s, int k) {
        int from = text.length() - k;
        for (int i = 0; i < k; i++) {
            if (text.charAt(from + i) != s.charAt(i)) {
                return false;
            }
        }
        return true;
    }

    /**
     * Where the earliest stop string starts in {@code text}, looking only where one could start that ends in the text
     * added after {@code previousLength}; -1 when none does.
     */
    private static int stopAt(StringBuilder text, int previousLength, int maxStop, List<String> stops) {
        if (stops.isEmpty()) {
            return -1;
        }
        int from = Math.max(0, previousLength - maxStop);
        int best = -1;
        for (String s : stops) {
            int i = text.indexOf(s, from);
            if (i >= 0 && (best < 0 || i < best)) {
                best = i;
            }
        }
        return best;
    }
}
