package dev.kvq.eval;

import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Teacher forcing through a cache, kvq's one implementation: each window's first {@code prefill} tokens are the
 * prompt; then every true token is fed by a decode step, so each prediction after the prompt comes from a decode step
 * over the cache's (possibly quantized) past. A reference cache (full precision, typically) can run in lockstep over
 * the same windows, so both next-token distributions of every position are seen together. Perplexity, KL, top-1
 * agreement and the tuner's objectives are all computed from what this hands out.
 */
public final class TeacherForcing {
    private TeacherForcing() {
    }

    /** Receives the logits of every predicted position. */
    @FunctionalInterface
    public interface Sink {
        /**
         * @param window the window's index in the list
         * @param target index in the window of the token the logits predict
         * @param logits the cache's next-token logits
         * @param reference the reference cache's logits at the same position, or null without a reference
         */
        void accept(int window, int target, float[] logits, float[] reference);

        /** After each batch of windows, with their caches (still open) in window order. */
        default void batchDone(int firstWindow, List<KvCache> caches) {
        }
    }

    /**
     * Which positions are predicted, and how many windows run at once.
     *
     * @param prefill prompt tokens per window
     * @param batch windows run together as one batch
     * @param fromPrompt also hand out the prompt's own prediction of its next token (target {@code prefill}); the
     *     later targets always come from decode steps
     */
    public record Options(int prefill, int batch, boolean fromPrompt) {
        public Options {
            if (prefill < 1) {
                throw KvqException.config("prefill must be at least 1 token, was " + prefill);
            }
            if (batch < 1) {
                throw KvqException.config("batch must be at least 1, was " + batch);
            }
        }
    }

    /**
     * Runs every window (all of one length) through {@code caches} and, when not null, {@code reference}, handing
     * {@code sink} the logits predicting targets {@code prefill + 1 .. length - 1} (from {@code prefill} with
     * {@link Options#fromPrompt}). The last token of a window is never fed.
     */
    public static void run(Decoder decoder, CacheFactory caches, CacheFactory reference, List<int[]> windows,
                           Options options, Sink sink) {
        if (windows.isEmpty()) {
            throw KvqException.config("no windows to score");
        }
        int length = windows.getFirst().length;
        for (int[] w : windows) {
            if (w.length != length) {
                throw KvqException.config("windows scored together must have one length: " + length + " and "
                        + w.length);
            }
        }
        if (options.prefill() >= length) {
            throw KvqException.config("prefill (" + options.prefill() + ") must leave tokens of the " + length
                    + "-token window to predict");
        }
        for (int from = 0; from < windows.size(); from += options.batch()) {
            List<int[]> batch = windows.subList(from, Math.min(windows.size(), from + options.batch()));
            int b = batch.size();
            try (DecodeSession q = session(decoder, caches, b);
                 DecodeSession f = reference == null ? null : session(decoder, reference, b)) {
                int[][] feed = new int[b][];
                for (int i = 0; i < b; i++) {
                    feed[i] = Arrays.copyOf(batch.get(i), options.prefill());
                }
                float[][][] lq = q.feed(feed, false);
                float[][][] lf = f == null ? null : f.feed(feed, false);
                if (options.fromPrompt()) {
                    hand(sink, from, options.prefill(), lq, lf);
                }
                for (int pos = options.prefill(); pos < length - 1; pos++) {
                    for (int i = 0; i < b; i++) {
                        feed[i] = new int[] {batch.get(i)[pos]};
                    }
                    lq = q.feed(feed, false);
                    lf = f == null ? null : f.feed(feed, false);
                    hand(sink, from, pos + 1, lq, lf);
                }
                List<KvCache> held = new ArrayList<>(b);
                for (int i = 0; i < b; i++) {
                    held.add(q.cache(i));
                }
                sink.batchDone(from, held);
            }
        }
    }

    private static void hand(Sink sink, int first, int target, float[][][] logits, float[][][] reference) {
        for (int i = 0; i < logits.length; i++) {
            sink.accept(first + i, target, logits[i][0], reference == null ? null : reference[i][0]);
        }
    }

    private static DecodeSession session(Decoder decoder, CacheFactory caches, int batch) {
        return caches.session(decoder, batch);
    }
}
