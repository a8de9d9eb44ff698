package dev.kvq.eval;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Consecutive, non-overlapping windows of {@code window} tokens cut from a text slice. */
public final class TextWindows {
    private TextWindows() {
    }

    /**
     * Tokenizes characters {@code [offset, offset + length)} of {@code text} (to the end when {@code length <= 0})
     * and cuts the tokens into full windows; a shorter tail is dropped.
     */
    public static List<int[]> of(Tokenizer tokenizer, String text, int offset, int length, int window) {
        if (offset < 0 || offset >= text.length()) {
            throw KvqException.config("offset " + offset + " is outside the text (" + text.length() + " characters)");
        }
        if (window < 2) {
            throw KvqException.config("window must be at least 2 tokens, was " + window);
        }
        int end = length <= 0 ? text.length() : Math.min(text.length(), offset + length);
        int[] ids = tokenizer.encode(text.substring(offset, end));
        List<int[]> out = new ArrayList<>();
        for (int start = 0; start + window <= ids.length; start += window) {
            out.add(Arrays.copyOfRange(ids, start, start + window));
        }
        if (out.isEmpty()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "the slice holds " + ids.length
                    + " tokens, fewer than one window of " + window + "; give a longer --length");
        }
        return out;
    }
}
