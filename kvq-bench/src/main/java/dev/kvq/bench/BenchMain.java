package dev.kvq.bench;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;

/**
 * Runs {@link QuantizerBenchmark} and prints, per backend, bit width and grouping, quantize and dequantize throughput
 * in GB/s of float32 input beside the copy measured in the same run, and each as a fraction of copy bandwidth.
 *
 * <pre>java -jar kvq-bench/target/benchmarks.jar [backends=vanilla,hqq,hqq-noopt,quanto] [quick]</pre>
 */
public final class BenchMain {
    private BenchMain() {
    }

    public static void main(String[] args) throws RunnerException {
        String backends = "vanilla,hqq,hqq-noopt,quanto";
        boolean quick = false;
        for (String a : args) {
            if (a.startsWith("backends=")) {
                backends = a.substring(9);
            } else if (a.equals("quick")) {
                quick = true;
            }
        }
        ChainedOptionsBuilder opts = new OptionsBuilder().include(QuantizerBenchmark.class.getName())
                .param("backend", backends.split(","));
        if (quick) {
            opts.warmupIterations(2).measurementIterations(3).warmupTime(TimeValue.milliseconds(500))
                    .measurementTime(TimeValue.milliseconds(500));
        }
        Collection<RunResult> results = new Runner(opts.build()).run();
        double bytes = (double) QuantizerBenchmark.HEADS * QuantizerBenchmark.TOKENS * QuantizerBenchmark.DIM * Float.BYTES;
        Map<String, double[]> rows = new TreeMap<>();
        List<Double> copies = new ArrayList<>();
        for (RunResult r : results) {
            var p = r.getParams();
            String method = p.getBenchmark().substring(p.getBenchmark().lastIndexOf('.') + 1);
            double micros = r.getPrimaryResult().getScore();
            double gbps = bytes / (micros * 1e-6) / 1e9;
            if (method.equals("copy")) {
                copies.add(gbps);
                continue;
            }
            String key = String.format("%-10s %d-bit %-8s", p.getParam("backend"), Integer.parseInt(p.getParam("bits")),
                    p.getParam("grouping"));
            rows.computeIfAbsent(key, k -> new double[2])[method.equals("quantize") ? 0 : 1] = gbps;
        }
        double copy = copies.stream().mapToDouble(Double::doubleValue).average().orElse(Double.NaN);
        System.out.printf(Locale.ROOT, "%nfloat32 input %d x %d x %d (%.1f MiB); copy %.2f GB/s (mean of %d runs in this "
                + "session)%n", QuantizerBenchmark.HEADS, QuantizerBenchmark.TOKENS, QuantizerBenchmark.DIM,
                bytes / (1 << 20), copy, copies.size());
        System.out.printf(Locale.ROOT, "%-28s %12s %8s %12s %8s%n", "case", "quantize", "of copy", "dequantize", "of copy");
        for (var e : rows.entrySet()) {
            double[] v = e.getValue();
            System.out.printf(Locale.ROOT, "%-28s %8.2f GB/s %7.3f %8.2f GB/s %7.3f%n", e.getKey(), v[0], v[0] / copy,
                    v[1], v[1] / copy);
        }
    }
}
