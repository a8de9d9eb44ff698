package dev.kvq.tuner;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SearchSpaceTest {
    @Test
    void keepsExactlyTheParetoOptimalPairs() {
        Map<String, Double> e = new LinkedHashMap<>();
        e.put("KV8", 0.01);
        e.put("K8V4", 0.05);
        e.put("K4V8", 0.20);   // 6 bits, worse than K8V4 at the same bits
        e.put("KV4", 0.06);
        e.put("K8V2", 0.30);   // 5 bits, worse than KV4 at fewer bits
        e.put("K4V2", 0.25);
        e.put("K2V4", 0.40);   // 3 bits, worse than K4V2
        e.put("K2V8", 0.45);
        e.put("KV2", 0.70);
        assertEquals(List.of("KV2", "K4V2", "KV4", "K8V4", "KV8"), SearchSpace.pareto(e));
    }

    @Test
    void keepsPairsThatEitherMetricFindsOptimal() {
        Map<String, Profile.Errors> errors = new LinkedHashMap<>();
        errors.put("KV4", new Profile.Errors(0.1, 0, 0, 0.003));
        errors.put("K4V2", new Profile.Errors(0.50, 0, 0, 0.03));   // worse attention error than K2V4,
        errors.put("K2V4", new Profile.Errors(0.49, 0, 0, 0.11));   // but far better KL
        errors.put("KV2", new Profile.Errors(0.7, 0, 0, 0.15));
        assertEquals(List.of("KV2", "K2V4", "K4V2", "KV4"), SearchSpace.keep(errors));
        errors.replaceAll((k, v) -> new Profile.Errors(v.attention(), 0, 0, null));
        assertEquals(List.of("KV2", "K2V4", "KV4"), SearchSpace.keep(errors));
    }

    @Test
    void clustersSimilarProfilesTogether() {
        List<double[]> profiles = List.of(new double[] {0, 0}, new double[] {5, 5}, new double[] {0.1, 0},
                new double[] {5, 5.2}, new double[] {9, 9});
        assertEquals(List.of(List.of(0, 2), List.of(1, 3), List.of(4)), SearchSpace.cluster(profiles, 3));
        assertEquals(List.of(List.of(0, 1, 2, 3, 4)), SearchSpace.cluster(profiles, 1));
        assertEquals(5, SearchSpace.cluster(profiles, 9).size());
    }
}
