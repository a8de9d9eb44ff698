package dev.kvq.generate;

import java.util.Arrays;
import java.util.List;

/**
 * One sequence's generation after its prompt: picks each token from the logits with its own {@link Sampler} (seeded by
 * the options' seed and the sequence's index, so the tokens do not depend on which other sequences share a batch),
 * turns tokens into text, and ends at an end token, a stop string or the token limit. Everything a step touches is
 * kept here and reused. Not thread-safe; one per sequence.
 */
public final class Continuation {
    private static final int[] NOTHING = new int[0];

    private final Generator.Options options;
    private final Sampler sampler;
    private final Tokenizer.TextStream stream;
    private final int[] eos;
    private final int maxStop;
    private final StringBuilder text = new StringBuilder();
    /** The token fed at the next step, as the one-token row a session takes. */
    private final int[] last = new int[1];
    private int[] tokens;
    private int count;
    /** Characters of {@link #text} the listener has been given. */
    private int emitted;
    private String stopReason;
    /** The token the last {@link #accept} chose, an end token included. */
    private int chosen = -1;

    /**
     * @param sequence the index that seeds the sampler: a prompt's index in its batch, as {@link Generator} numbers them
     * @param eos the model's end tokens
     */
    public Continuation(Generator.Options options, int sequence, Tokenizer.TextStream stream, int[] eos) {
        this.options = options;
        this.sampler = new Sampler(options.sampling(), sequence);
        this.stream = stream;
        this.eos = eos;
        this.maxStop = options.stopStrings().stream().mapToInt(String::length).max().orElse(0);
        this.tokens = new int[Math.max(Math.min(options.maxNewTokens(), 1024), 1)];
    }

    /**
     * Picks the next token from {@code logits}, gives it to {@code listener} (may be null) with its text, and says
     * whether the sequence goes on: then {@link #next()} is the row to feed.
     *
     * @param index the sequence index the listener is given
     */
    public boolean accept(float[] logits, Generator.Listener listener, int index) {
        int token = sampler.next(logits);
        chosen = token;
        if (contains(eos, token)) {
            stopReason = "eos";
            emit(listener, index, token, text.length(), "");
            return false;
        }
        add(token);
        String piece = stream.next(token);
        int before = text.length();
        text.append(piece);
        int cut = stopAt(text, before, maxStop, options.stopStrings());
        if (cut >= 0) {
            stopReason = "stop";
            text.setLength(cut);
            emit(listener, index, token, cut, piece);
            return false;
        }
        if (count >= options.maxNewTokens()) {
            stopReason = "length";
            emit(listener, index, token, text.length(), piece);
            return false;
        }
        // text that may be the start of a stop string waits until the next tokens decide
        emit(listener, index, token, text.length() - stopPrefixAtEnd(text, options.stopStrings()), piece);
        last[0] = token;
        return true;
    }

    /** The row to feed after an {@link #accept} that returned true (the same array every step); empty once done. */
    public int[] next() {
        return stopReason == null ? last : NOTHING;
    }

    /** The token the last {@link #accept} chose, an end token included; -1 before the first. */
    public int lastToken() {
        return chosen;
    }

    /** Whether the sequence has ended. */
    public boolean done() {
        return stopReason != null;
    }

    /** "eos", "stop" or "length" once done, else null. */
    public String stopReason() {
        return stopReason;
    }

    /** The text so far (without any stop string). */
    public String text() {
        return text.toString();
    }

    /** The tokens chosen so far, the end token excluded. */
    public int[] tokens() {
        return Arrays.copyOf(tokens, count);
    }

    /**
     * Gives the listener, with {@code token}, the text up to {@code end} not given yet (possibly none); when that is
     * exactly the token's own {@code piece}, the piece itself, so streaming a tokenizer's strings copies nothing.
     */
    private void emit(Generator.Listener listener, int sequence, int token, int end, String piece) {
        if (listener != null) {
            boolean own = end == text.length() && emitted == end - piece.length();
            listener.onToken(sequence, token, own ? piece : end > emitted ? text.substring(emitted, end) : "");
        }
        emitted = Math.max(emitted, end);
    }

    private void add(int token) {
        if (count == tokens.length) {
            tokens = Arrays.copyOf(tokens, 2 * count);
        }
        tokens[count++] = token;
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
