package dev.kvq.testkit;

/** Comparisons used by numeric tests. */
public final class Numeric {
    private Numeric() {
    }

    public static float maxAbs(float[] a) {
        float m = 0;
        for (float v : a) {
            m = Math.max(m, Math.abs(v));
        }
        return m;
    }

    public static float range(float[] a) {
        float mn = Float.POSITIVE_INFINITY;
        float mx = Float.NEGATIVE_INFINITY;
        for (float v : a) {
            mn = Math.min(mn, v);
            mx = Math.max(mx, v);
        }
        return mx - mn;
    }

    public static float maxAbsDiff(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new IllegalArgumentException("lengths differ: " + a.length + " vs " + b.length);
        }
        float m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    /** The largest |a - b| relative to the largest |a| (at least 1): how far logits differ, on their own scale. */
    public static double maxRelativeDiff(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new IllegalArgumentException("lengths differ: " + a.length + " vs " + b.length);
        }
        double scale = 1;
        double worst = 0;
        for (int i = 0; i < a.length; i++) {
            scale = Math.max(scale, Math.abs(a[i]));
            worst = Math.max(worst, Math.abs(a[i] - b[i]));
        }
        return worst / scale;
    }

    /** Index of the first element where |a-b| > tol, or -1. */
    public static int firstMismatch(float[] a, float[] b, float tol) {
        for (int i = 0; i < a.length; i++) {
            if (!(Math.abs(a[i] - b[i]) <= tol)) {
                return i;
            }
        }
        return -1;
    }
}
