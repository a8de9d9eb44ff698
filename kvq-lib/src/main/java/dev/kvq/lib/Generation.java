package dev.kvq.lib;

import java.util.List;

/**
 * The outcome of one generate call: a completion per prompt, and what the caches held and how fast it went.
 *
 * @param kvBytes bytes the KV caches of all sequences held at the end
 * @param kvBytesFp16 bytes a float16 cache of the same tokens would hold
 * @param prefillMillis time of the prompt's forward pass
 * @param decodeTokensPerSecond tokens chosen from decode steps per second, all sequences together
 */
public record Generation(List<Completion> completions, long kvBytes, long kvBytesFp16, double prefillMillis,
                         double decodeTokensPerSecond) {
    public Generation {
        completions = List.copyOf(completions);
    }

    /** The first (or only) completion's text. */
    public String text() {
        return completions.getFirst().text();
    }

    /**
     * One prompt's continuation.
     *
     * @param tokens the generated token ids (an end token excluded)
     * @param stopReason {@code length}, {@code eos} or {@code stop}
     */
    public record Completion(String prompt, String text, int[] tokens, String stopReason) {
    }
}
