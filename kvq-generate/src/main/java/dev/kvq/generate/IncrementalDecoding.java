package dev.kvq.generate;

import java.util.Arrays;

/**
 * Incremental detokenization as text-generation servers do it: the text a token adds is the decoding of a window
 * that starts a token or more before it, minus the decoding of the window without it, so a tokenizer's handling of
 * a token's neighbours (a leading space, bytes of one character split over tokens) comes out right without decoding
 * the whole sequence at every token. A window whose text ends in U+FFFD (an incomplete character) waits for the
 * next token.
 */
final class IncrementalDecoding implements Tokenizer.TextStream {
    private final Tokenizer tokenizer;
    private int[] ids = new int[64];
    private int count;
    /** Start of the window decoded for context, and end of the text already returned. */
    private int prefixOffset;
    private int readOffset;

    IncrementalDecoding(Tokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    @Override
    public String next(int token) {
        if (count == ids.length) {
            ids = Arrays.copyOf(ids, 2 * count);
        }
        ids[count++] = token;
        String prefix = tokenizer.decode(ids, prefixOffset, readOffset);
        String text = tokenizer.decode(ids, prefixOffset, count);
        if (text.length() <= prefix.length() || text.endsWith("\uFFFD")) {
            return "";
        }
        prefixOffset = readOffset;
        readOffset = count;
        return text.substring(prefix.length());
    }
}
