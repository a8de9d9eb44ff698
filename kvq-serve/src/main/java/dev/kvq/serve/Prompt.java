package dev.kvq.serve;

/** One prompt of a request: text, or token ids as OpenAI's API also accepts (lm-evaluation-harness sends those). */
sealed interface Prompt {
    record Text(String text) implements Prompt {
    }

    record Tokens(int[] ids) implements Prompt {
    }
}
