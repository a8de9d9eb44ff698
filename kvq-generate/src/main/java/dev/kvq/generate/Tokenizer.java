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

    @Override
    default void close() {
    }
}
