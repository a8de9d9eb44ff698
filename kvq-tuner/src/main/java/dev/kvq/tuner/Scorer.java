package dev.kvq.tuner;

import dev.kvq.config.KvQuantConfig;

/**
 * What a search minimizes for one configuration. {@link Evaluator} runs the model; a search opens one scorer per
 * thread it evaluates on, since a model is not thread-safe, and closes them when it ends.
 */
public interface Scorer extends AutoCloseable {
    /** The value to minimize (an accuracy negated). */
    double score(KvQuantConfig config);

    @Override
    void close();
}
