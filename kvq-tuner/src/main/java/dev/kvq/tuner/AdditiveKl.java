package dev.kvq.tuner;

import dev.kvq.config.LayerBits;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The profile's additive estimate of a configuration's next-token KL: the sum over layers of the KL measured with only
 * that layer quantized at its pair. Layers interact, so this is a guide, not a measurement; it is cheap (no model run),
 * which makes it good for two things: seeding the search with the estimate's best configuration at every bit total,
 * and showing, right after calibration, what a budget can reach at best.
 *
 * <p>The best configuration at each bit total comes from a knapsack over the groups (exact for the estimate): a
 * layer's pair costs {@code keyBits + valueBits} units, and the average bits are the units over twice the layers.
 */
public final class AdditiveKl {
    private AdditiveKl() {
    }

    /**
     * One estimated configuration.
     *
     * @param choice index of the chosen pair in each group's candidates
     * @param pairs the chosen pair of each group
     * @param avgBits average KV bits over the layers
     * @param kl the summed single-layer KL
     */
    public record Estimate(int[] choice, List<String> pairs, double avgBits, double kl) {
    }

    /** True when every layer has a KL for every pair the groups name. */
    public static boolean available(Profile profile, List<Profile.Group> groups) {
        for (Profile.Group g : groups) {
            for (int layer : g.layers()) {
                for (String pair : g.candidates()) {
                    Profile.Errors e = errors(profile, layer).errors().get(pair);
                    if (e == null || e.kl() == null) {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    /** One group per layer with every measured pair: the unpruned space, for what a budget can reach at best. */
    public static List<Profile.Group> unpruned(Profile profile) {
        return profile.layers().stream().map(l -> new Profile.Group(List.of(l.layer()),
                l.errors().keySet().stream().map(Pair::parse).sorted().map(Pair::name).toList())).toList();
    }

    /** The estimate of each uniform configuration the groups hold (every group on the same pair). */
    public static List<Estimate> uniforms(Profile profile, List<Profile.Group> groups) {
        return Tuner.uniformChoices(groups).stream().map(c -> estimate(profile, groups, c)).toList();
    }

    /** The estimate of one choice. */
    public static Estimate estimate(Profile profile, List<Profile.Group> groups, int[] choice) {
        double kl = 0;
        int units = 0;
        int layers = 0;
        List<String> pairs = new ArrayList<>();
        for (int i = 0; i < groups.size(); i++) {
            Profile.Group g = groups.get(i);
            String pair = g.candidates().get(choice[i]);
            pairs.add(pair);
            kl += groupKl(profile, g, pair);
            units += unitsOf(g, pair);
            layers += g.layers().size();
        }
        return new Estimate(choice.clone(), List.copyOf(pairs), units / (2.0 * layers), kl);
    }

    /**
     * For each reachable bit total, the choice with the lowest estimated KL, kept only when it beats every cheaper
     * total: the estimate's Pareto front, cheapest first. Empty when the profile has no KL.
     */
    public static List<Estimate> front(Profile profile, List<Profile.Group> groups) {
        if (!available(profile, groups)) {
            return List.of();
        }
        // each candidate's cost and bits, per group, once: the knapsack reads them for every bit total
        int[][] units = new int[groups.size()][];
        double[][] kls = new double[groups.size()][];
        int maxUnits = 0;
        for (int i = 0; i < groups.size(); i++) {
            Profile.Group g = groups.get(i);
            units[i] = g.candidates().stream().mapToInt(p -> unitsOf(g, p)).toArray();
            kls[i] = g.candidates().stream().mapToDouble(p -> groupKl(profile, g, p)).toArray();
            maxUnits += Arrays.stream(units[i]).max().orElse(0);
        }
        // best[u]: lowest summed KL of the groups so far at exactly u units; pick[i][u]: group i's candidate there
        double[] best = new double[maxUnits + 1];
        Arrays.fill(best, Double.POSITIVE_INFINITY);
        best[0] = 0;
        int[][] pick = new int[groups.size()][maxUnits + 1];
        for (int i = 0; i < groups.size(); i++) {
            double[] next = new double[maxUnits + 1];
            Arrays.fill(next, Double.POSITIVE_INFINITY);
            Arrays.fill(pick[i], -1);
            for (int u = 0; u <= maxUnits; u++) {
                for (int c = 0; c < units[i].length && best[u] < Double.POSITIVE_INFINITY; c++) {
                    int v = u + units[i][c];
                    if (best[u] + kls[i][c] < next[v]) {
                        next[v] = best[u] + kls[i][c];
                        pick[i][v] = c;
                    }
                }
            }
            best = next;
        }
        List<Estimate> out = new ArrayList<>();
        double lowest = Double.POSITIVE_INFINITY;
        for (int u = 0; u <= maxUnits; u++) {
            if (best[u] < lowest) {
                lowest = best[u];
                int[] choice = new int[groups.size()];
                int at = u;
                for (int i = groups.size() - 1; i >= 0; i--) {
                    choice[i] = pick[i][at];
                    at -= units[i][choice[i]];
                }
                out.add(estimate(profile, groups, choice));
            }
        }
        return out;
    }

    /** The front's best estimate within {@code budget} average bits, or null. */
    public static Estimate best(List<Estimate> front, double budget) {
        Estimate out = null;
        for (Estimate e : front) {
            if (e.avgBits() <= budget + Tuner.BITS_TOLERANCE) {
                out = e;
            }
        }
        return out;
    }

    private static int unitsOf(Profile.Group g, String pair) {
        Pair p = Pair.parse(pair);
        return g.layers().size() * (p.keyBits() + p.valueBits());
    }

    private static double groupKl(Profile profile, Profile.Group g, String pair) {
        double kl = 0;
        for (int layer : g.layers()) {
            kl += errors(profile, layer).errors().get(pair).kl();
        }
        return kl;
    }

    private static Profile.LayerProfile errors(Profile profile, int layer) {
        for (Profile.LayerProfile l : profile.layers()) {
            if (l.layer() == layer) {
                return l;
            }
        }
        throw dev.kvq.KvqException.config("the profile has no layer " + layer + " although a group names it");
    }

    /**
     * What a budget can reach at best by the estimate, over the unpruned space: the best mix within {@code budget} bits
     * and its per-layer bits, beside the best uniform pair within the same budget (null when there is none).
     */
    public record BudgetEstimate(double budget, Estimate mix, Map<Integer, LayerBits> layers, Estimate uniform) {
    }

    /**
     * The estimate at each budget, over the unpruned space; a budget no mix fits is left out. Empty when the profile
     * has no KL (calibrated without {@code --kl-windows}).
     */
    public static List<BudgetEstimate> budgets(Profile profile, double... budgets) {
        List<Profile.Group> all = unpruned(profile);
        if (!available(profile, all)) {
            return List.of();
        }
        List<Estimate> front = front(profile, all);
        List<Estimate> uniforms = uniforms(profile, all);
        List<BudgetEstimate> out = new ArrayList<>();
        for (double budget : budgets) {
            Estimate mix = best(front, budget);
            if (mix == null) {
                continue;
            }
            Map<Integer, LayerBits> layers = new TreeMap<>();
            for (int i = 0; i < all.size(); i++) {
                layers.put(all.get(i).layers().getFirst(), Pair.parse(mix.pairs().get(i)).bits());
            }
            Estimate uniform = uniforms.stream().filter(e -> e.avgBits() <= budget + Tuner.BITS_TOLERANCE)
                    .min(Comparator.comparingDouble(Estimate::kl)).orElse(null);
            out.add(new BudgetEstimate(budget, mix, layers, uniform));
        }
        return out;
    }
}
