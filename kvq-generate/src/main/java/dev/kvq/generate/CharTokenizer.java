package dev.kvq.generate;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

/** A character-level vocabulary: token id = index of the character in the list. */
public final class CharTokenizer implements Tokenizer {
    private final List<String> chars;
    private final Map<Integer, Integer> ids = new HashMap<>();
    private final UnknownChars unknown;
    private final int replacementId;
    private final AtomicLong replaced = new AtomicLong();

    public CharTokenizer(List<String> chars, UnknownChars unknown) {
        this.chars = List.copyOf(chars);
        this.unknown = unknown;
        for (int i = 0; i < chars.size(); i++) {
            String c = chars.get(i);
            if (c.codePointCount(0, c.length()) != 1) {
                throw new KvqException(ErrorCode.MODEL_INVALID, "character vocabulary entry " + i + " is '" + c
                        + "', not one character");
            }
            if (ids.put(c.codePointAt(0), i) != null) {
                throw new KvqException(ErrorCode.MODEL_INVALID, "character vocabulary lists '" + c + "' twice");
            }
        }
        if (unknown.replaces()) {
            Integer r = ids.get(unknown.replacement().codePointAt(0));
            if (r == null) {
                throw KvqException.config("the replacement character '" + unknown.replacement() + "' is not in the "
                        + "model's vocabulary");
            }
            replacementId = r;
        } else {
            replacementId = -1;
        }
    }

    @Override
    public int[] encode(String text) {
        int[] out = new int[text.codePointCount(0, text.length())];
        int n = 0;
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            Integer id = ids.get(cp);
            if (id == null) {
                if (replacementId < 0) {
                    throw new KvqException(ErrorCode.TOKENIZER, "the text has '" + new String(Character.toChars(cp))
                            + "' (U+" + String.format("%04X", cp) + ") at character " + n + ", which is not in the model's "
                            + chars.size() + "-character vocabulary; remove it, or map unknown characters to a "
                            + "vocabulary character (--unknown-chars replace)");
                }
                id = replacementId;
                replaced.incrementAndGet();
            }
            out[n++] = id;
            i += Character.charCount(cp);
        }
        return out;
    }

    @Override
    public String decode(int[] tokens, int from, int to) {
        StringBuilder sb = new StringBuilder(to - from);
        for (int i = from; i < to; i++) {
            int t = tokens[i];
            if (t < 0 || t >= chars.size()) {
                throw new KvqException(ErrorCode.TOKENIZER, "token id " + t + " is outside the vocabulary of "
                        + chars.size());
            }
            sb.append(chars.get(t));
        }
        return sb.toString();
    }

    /** Each token is one character: its text is the vocabulary's own string, so streaming allocates nothing. */
    @Override
    public TextStream textStream() {
        return token -> {
            if (token < 0 || token >= chars.size()) {
                throw new KvqException(ErrorCode.TOKENIZER, "token id " + token + " is outside the vocabulary of "
                        + chars.size());
            }
            return chars.get(token);
        };
    }

    @Override
    public int vocabSize() {
        return chars.size();
    }

    /** Characters replaced so far because they were not in the vocabulary. */
    public long replaced() {
        return replaced.get();
    }

    public boolean contains(int codePoint) {
        return ids.containsKey(codePoint);
    }

    @Override
    public String describe() {
        return "character vocabulary of " + chars.size() + (unknown.replaces() ? ", unknown characters -> '"
                + unknown.replacement() + "'" : "");
    }
}
