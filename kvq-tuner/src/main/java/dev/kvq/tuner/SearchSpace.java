package dev.kvq.tuner;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * KVTuner's search-space reduction, derived from a profile instead of hard-coded per model.
 *
 * <ul>
 *   <li><b>Intra-layer:</b> a layer keeps the pairs that are Pareto-optimal in (average bits, attention error): no
 *       other pair has no more bits and a lower error. When the end-to-end KL was measured, a pair is also kept if it
 *       is Pareto-optimal in (average bits, KL): the attention error of one layer misses how a key error, which moves
 *       the softmax weights, compounds through later layers, and on kvq's models it would prune pairs the KL shows
 *       to be the best at their bits.</li>
 *   <li><b>Inter-layer:</b> layers are clustered by their sensitivity profiles (log10 of the KL of every pair when
 *       measured, else of the attention error), agglomeratively with average linkage on Euclidean distance, until
 *       {@code groups} clusters remain. A group's candidates are the Pareto pairs (by the same rule) of its members'
 *       mean errors, so every member shares one choice.</li>
 * </ul>
 */
public final class SearchSpace {
    private SearchSpace() {
    }

    /** The Pareto-optimal pairs of one layer's errors, cheapest first. */
    public static List<String> pareto(Map<String, Double> errors) {
        List<Pair> pairs = errors.keySet().stream().map(Pair::parse).sorted().toList();
        List<String> keep = new ArrayList<>();
        for (Pair p : pairs) {
            double e = errors.get(p.name());
            boolean dominated = false;
            for (Pair q : pairs) {
                double f = errors.get(q.name());
                if (q != p && q.averageBits() <= p.averageBits() && f <= e
                        && (q.averageBits() < p.averageBits() || f < e)) {
                    dominated = true;
                    break;
                }
            }
            if (!dominated) {
                keep.add(p.name());
            }
        }
        return keep;
    }

    /** Clusters layers into {@code groups} groups of similar profiles. */
    public static List<List<Integer>> cluster(List<double[]> profiles, int groups) {
        List<List<Integer>> clusters = new ArrayList<>();
        for (int i = 0; i < profiles.size(); i++) {
            clusters.add(new ArrayList<>(List.of(i)));
        }
        int target = Math.max(1, Math.min(groups, profiles.size()));
        while (clusters.size() > target) {
            int bestA = -1;
            int bestB = -1;
            double best = Double.POSITIVE_INFINITY;
            for (int a = 0; a < clusters.size(); a++) {
                for (int b = a + 1; b < clusters.size(); b++) {
                    double d = averageLinkage(clusters.get(a), clusters.get(b), profiles);
                    if (d < best) {
                        best = d;
                        bestA = a;
                        bestB = b;
                    }
                }
            }
            clusters.get(bestA).addAll(clusters.remove(bestB));
            clusters.get(bestA).sort(Integer::compare);
        }
        clusters.sort(Comparator.comparingInt(List::getFirst));
        return clusters;
    }

    private static double averageLinkage(List<Integer> a, List<Integer> b, List<double[]> profiles) {
        double sum = 0;
        for (int i : a) {
            for (int j : b) {
                double d = 0;
                double[] x = profiles.get(i);
                double[] y = profiles.get(j);
                for (int k = 0; k < x.length; k++) {
                    d += (x[k] - y[k]) * (x[k] - y[k]);
                }
                sum += Math.sqrt(d);
            }
        }
        return sum / (a.size() * b.size());
    }

    /** The pairs kept for one layer: Pareto-optimal by attention error, or by KL when measured. */
    public static List<String> keep(Map<String, Profile.Errors> errors) {
        Map<String, Double> attention = new java.util.LinkedHashMap<>();
        Map<String, Double> kl = new java.util.LinkedHashMap<>();
        errors.forEach((name, e) -> {
            attention.put(name, e.attention());
            if (e.kl() != null) {
                kl.put(name, e.kl());
            }
        });
        TreeSet<Pair> kept = new TreeSet<>();
        pareto(attention).forEach(n -> kept.add(Pair.parse(n)));
        if (kl.size() == errors.size()) {
            pareto(kl).forEach(n -> kept.add(Pair.parse(n)));
        }
        return kept.stream().map(Pair::name).toList();
    }

    /** Builds the groups of a profile: clusters of layers and the kept pairs of each cluster's mean errors. */
    public static List<Profile.Group> groups(List<Profile.LayerProfile> layers, int groups) {
        List<String> names = new ArrayList<>(new TreeSet<>(layers.getFirst().errors().keySet()));
        boolean withKl = layers.stream().allMatch(l -> l.errors().values().stream().allMatch(e -> e.kl() != null));
        List<double[]> profiles = new ArrayList<>();
        for (Profile.LayerProfile l : layers) {
            double[] v = new double[names.size()];
            for (int i = 0; i < names.size(); i++) {
                Profile.Errors e = l.errors().get(names.get(i));
                v[i] = Math.log10(Math.max(1e-12, withKl ? e.kl() : e.attention()));
            }
            profiles.add(v);
        }
        List<Profile.Group> out = new ArrayList<>();
        for (List<Integer> members : cluster(profiles, groups)) {
            Map<String, Profile.Errors> mean = new java.util.LinkedHashMap<>();
            for (String n : names) {
                double a = members.stream().mapToDouble(i -> layers.get(i).errors().get(n).attention()).average()
                        .orElseThrow();
                Double k = withKl ? members.stream().mapToDouble(i -> layers.get(i).errors().get(n).kl()).average()
                        .orElseThrow() : null;
                mean.put(n, new Profile.Errors(a, 0, 0, k));
            }
            out.add(new Profile.Group(List.copyOf(members), keep(mean)));
        }
        return out;
    }
}
