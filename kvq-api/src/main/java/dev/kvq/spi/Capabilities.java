package dev.kvq.spi;

import java.util.Set;
import java.util.SortedSet;
import java.util.TreeSet;

/**
 * What a backend can do, for listing and for validating configurations before any data is touched.
 *
 * @param bits supported code widths
 * @param axes supported axis values, in the backend's own spelling
 * @param wholeRowGroups whether group size -1 (one group per head_dim row, per-token axis only) is accepted
 * @param symmetric whether symmetric quantization is offered
 * @param asymmetric whether asymmetric quantization is offered
 * @param options option keys the backend reads
 * @param description one line on the method
 */
public record Capabilities(SortedSet<Integer> bits, SortedSet<Integer> axes, boolean wholeRowGroups,
                           boolean symmetric, boolean asymmetric, Set<String> options, String description) {
    public Capabilities {
        bits = java.util.Collections.unmodifiableSortedSet(new TreeSet<>(bits));
        axes = java.util.Collections.unmodifiableSortedSet(new TreeSet<>(axes));
        options = Set.copyOf(options);
    }

    public static Capabilities of(Set<Integer> bits, Set<Integer> axes, boolean wholeRowGroups, boolean symmetric,
                                  boolean asymmetric, Set<String> options, String description) {
        return new Capabilities(new TreeSet<>(bits), new TreeSet<>(axes), wholeRowGroups, symmetric, asymmetric,
                options, description);
    }
}
