package dev.kvq.generate;

import dev.kvq.KvqException;

/**
 * What a character tokenizer does with a character outside its vocabulary: fail (the default, naming the character
 * and where it is) or replace it with a chosen vocabulary character and count the replacements.
 *
 * @param replacement null to fail, else the vocabulary character to use
 */
public record UnknownChars(String replacement) {
    public static final UnknownChars ERROR = new UnknownChars(null);

    public static UnknownChars replaceWith(String c) {
        if (c == null || c.codePointCount(0, c.length()) != 1) {
            throw KvqException.config("the replacement for unknown characters must be one character, was '" + c + "'");
        }
        return new UnknownChars(c);
    }

    public boolean replaces() {
        return replacement != null;
    }
}
