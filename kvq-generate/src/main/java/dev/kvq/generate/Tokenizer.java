package dev.kvq.generate;

/** Text to token ids and back. */
public interface Tokenizer extends AutoCloseable {
    /** Token ids of {@code text} (for a prompt: with the special tokens the model expects at the start). */
    int[] encode(String text);

    /** Text of {@code ids[from, to)}. */
    String decode(int[] ids, int from, int to);

    default String decode(int[] ids) {
        return decode(ids, 0, ids.length);
    }

    int vocabSize();

    /** One line for logs: kind and size. */
    String describe();

    /**
     * A stream that turns one sequence's generated tokens into text, token by token. The default decodes a short
     * window of recent tokens each time ({@link IncrementalDecoding}), which is right for tokenizers whose tokens
     * change the text of their neighbours (byte-level BPE, SentencePiece's leading spaces).
     */
    default TextStream textStream() {
        return new IncrementalDecoding(this);
    }

    @Override
    default void close() {
    }

    /** Generated tokens to text, one token at a time. Not thread-safe; one per sequence. */
    @FunctionalInterface
    interface TextStream {
        /** The text {@code token} adds after the tokens before it: empty while it ends inside a character. */
        String next(int token);
    }
}
