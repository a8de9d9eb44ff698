package dev.kvq.lib;

import dev.kvq.KvqException;
import java.util.List;

/**
 * How to generate: at most {@code maxNewTokens}; greedy when {@code temperature} is 0, else sampled at that
 * temperature from the {@code topK} most likely tokens (0: all) and the smallest set reaching probability
 * {@code topP} (1: all), reproducibly for a {@code seed}; each sequence stops early at an end token or a stop string.
 */
public record GenerateOptions(int maxNewTokens, double temperature, int topK, double topP, long seed,
                              List<String> stopStrings) {
    public GenerateOptions {
        if (maxNewTokens < 1) {
            throw KvqException.config("max new tokens must be at least 1, was " + maxNewTokens);
        }
        stopStrings = List.copyOf(stopStrings);
    }

    /** The highest-scoring token every step. */
    public static GenerateOptions greedy(int maxNewTokens) {
        return new GenerateOptions(maxNewTokens, 0, 0, 1, 0, List.of());
    }

    /** Nucleus sampling at {@code temperature} with {@code topP}, seeded. */
    public static GenerateOptions sampled(int maxNewTokens, double temperature, double topP, long seed) {
        return new GenerateOptions(maxNewTokens, temperature, 0, topP, seed, List.of());
    }

    /** These options, sampling only from the {@code k} most likely tokens. */
    public GenerateOptions withTopK(int k) {
        return new GenerateOptions(maxNewTokens, temperature, k, topP, seed, stopStrings);
    }

    /** These options, stopping a sequence where one of {@code stops} begins (the stop string is not kept). */
    public GenerateOptions withStop(String... stops) {
        return new GenerateOptions(maxNewTokens, temperature, topK, topP, seed, List.of(stops));
    }
}
