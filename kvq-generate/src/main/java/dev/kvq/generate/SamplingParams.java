package dev.kvq.generate;

import dev.kvq.KvqException;

/**
 * How the next token is chosen: greedy when {@code temperature <= 0}, else sampled from the softmax at
 * {@code temperature}, restricted to the {@code topK} most likely tokens (0 = all) and to the smallest set whose
 * probability reaches {@code topP} (1 = all), with a seeded generator so that a run is reproducible.
 */
public record SamplingParams(double temperature, int topK, double topP, long seed) {
    public SamplingParams {
        if (topK < 0) {
            throw KvqException.config("top-k must be 0 (off) or positive, was " + topK);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw KvqException.config("top-p must be in (0, 1], was " + topP);
        }
        if (Double.isNaN(temperature) || temperature < 0) {
            throw KvqException.config("temperature must be 0 (greedy) or positive, was " + temperature);
        }
    }

    public static SamplingParams greedy() {
        return new SamplingParams(0, 0, 1, 0);
    }

    public boolean isGreedy() {
        return temperature <= 0;
    }
}
