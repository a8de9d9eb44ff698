package dev.kvq.tuner;

import dev.kvq.KvqException;
import dev.kvq.config.LayerBits;
import java.util.ArrayList;
import java.util.List;

/** A (key bits, value bits) candidate, named as KVTuner names them ({@code KV8}, {@code K8V4}). */
public record Pair(int keyBits, int valueBits) implements Comparable<Pair> {
    /** KVTuner's candidate set: every pair of {2, 4, 8}. */
    public static final List<Pair> KVTUNER = all(new int[] {8, 4, 2});

    public static List<Pair> all(int[] widths) {
        List<Pair> out = new ArrayList<>();
        for (int k : widths) {
            for (int v : widths) {
                out.add(new Pair(k, v));
            }
        }
        return out;
    }

    public static Pair parse(String name) {
        String s = name.trim().toUpperCase(java.util.Locale.ROOT);
        try {
            if (s.startsWith("KV")) {
                int b = Integer.parseInt(s.substring(2));
                return new Pair(b, b);
            }
            int v = s.indexOf('V');
            if (s.startsWith("K") && v > 1) {
                return new Pair(Integer.parseInt(s.substring(1, v)), Integer.parseInt(s.substring(v + 1)));
            }
        } catch (NumberFormatException e) {
            // fall through
        }
        throw KvqException.config("'" + name + "' is not a bit pair; write KV4 or K8V2");
    }

    public double averageBits() {
        return (keyBits + valueBits) / 2.0;
    }

    public LayerBits bits() {
        return new LayerBits(keyBits, valueBits);
    }

    public String name() {
        return keyBits == valueBits ? "KV" + keyBits : "K" + keyBits + "V" + valueBits;
    }

    @Override
    public int compareTo(Pair o) {
        int c = Double.compare(averageBits(), o.averageBits());
        return c != 0 ? c : Integer.compare(keyBits, o.keyBits);
    }

    @Override
    public String toString() {
        return name();
    }
}
