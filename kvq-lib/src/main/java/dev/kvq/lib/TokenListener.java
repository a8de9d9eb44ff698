package dev.kvq.lib;

/** Receives each generated token as it is chosen: streaming output. */
@FunctionalInterface
public interface TokenListener {
    /**
     * Called once per generated token, in order, for each prompt of a batch. The pieces of text add up to the
     * completion's text: a piece is empty while a token ends inside a character, or while the text might be the
     * start of a stop string (it comes with a later token); nothing of a stop string is ever given.
     *
     * @param sequence the prompt's index in the batch (0 for a single prompt)
     * @param token the token id
     * @param text the text given with this token
     */
    void onToken(int sequence, int token, String text);
}
