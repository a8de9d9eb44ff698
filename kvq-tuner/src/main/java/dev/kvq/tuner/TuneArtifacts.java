package dev.kvq.tuner;

import com.fasterxml.jackson.annotation.JsonAnyGetter;
import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.config.LayerBits;
import dev.kvq.eval.Report;
import dev.kvq.io.config.ConfigFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The files a tuning run leaves in its output directory: {@code search.json} ({@link Summary}), one KVTuner per-layer
 * file per Pareto point ({@code front-NN-B.BBBbits.yaml}), per budget the best point as {@code best-B.BBbits.yaml}
 * and {@code best-B.BBbits.kvq.yaml} ({@link PerLayerFiles}), and {@code pareto.png} with {@code index.html}.
 */
public final class TuneArtifacts {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private TuneArtifacts() {
    }

    /** One point as {@code search.json} lists it; its metric is a field named after the objective. */
    @JsonPropertyOrder({"avg_bits", "avg_k_bits", "avg_v_bits", "feasible", "layers", "file"})
    public record PointSummary(@JsonProperty("avg_bits") double avgBits, @JsonProperty("avg_k_bits") double avgKeyBits,
                               @JsonProperty("avg_v_bits") double avgValueBits, @JsonIgnore String objective,
                               @JsonIgnore Double metric, boolean feasible, String layers,
                               @JsonInclude(JsonInclude.Include.NON_NULL) String file) {
        @JsonAnyGetter
        public Map<String, Object> metricField() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put(objective, metric);
            return m;
        }
    }

    /**
     * {@code search.json}: the search, the baselines, the front with its files, each budget's best (keyed by the
     * budget, two decimals) and every evaluated point. The full-precision metric is {@code fp_<objective>}.
     */
    @JsonPropertyOrder({"model", "scheme", "objective", "max_avg_bits", "space_size", "exhaustive", "evaluations",
        "uniform", "front", "best", "evaluated"})
    public record Summary(String model, Map<String, Object> scheme, String objective,
                          @JsonProperty("max_avg_bits") double maxAvgBits, @JsonProperty("space_size") long spaceSize,
                          boolean exhaustive, long evaluations, @JsonIgnore double fullPrecision,
                          Map<String, Double> uniform, List<PointSummary> front, Map<String, PointSummary> best,
                          List<PointSummary> evaluated) {
        @JsonAnyGetter
        public Map<String, Object> fullPrecisionField() {
            return Map.of("fp_" + objective, fullPrecision);
        }
    }

    /** Writes every file into {@code outDir} and returns what {@code search.json} holds. */
    public static Summary write(Path outDir, Tuning.Outcome o) {
        Tuner.Result result = o.search();
        List<PointSummary> front = new ArrayList<>();
        int i = 0;
        for (Tuner.Point pt : result.front()) {
            String file = String.format("front-%02d-%.3fbits.yaml", i++, pt.avgBits());
            ConfigFiles.writePerLayer(outDir.resolve(file), pt.layers());
            front.add(point(o, pt, file));
        }
        Map<String, PointSummary> best = new LinkedHashMap<>();
        for (double budget : o.request().budgets()) {
            Tuner.Point pt = result.best(budget);
            if (pt != null) {
                PerLayerFiles.Written w = PerLayerFiles.write(outDir, String.format("best-%.2fbits", budget),
                        pt.layers(), o.scheme(), "the calibrated scheme with the tuned per-layer bits");
                best.put(String.format("%.2f", budget), point(o, pt, w.perLayer().getFileName().toString()));
            }
        }
        List<PointSummary> evaluated = result.evaluated().stream().map(pt -> point(o, pt, null)).toList();
        Summary summary = new Summary(o.model(), ConfigFiles.toMap(o.scheme()), o.objectiveName(),
                o.request().search().maxAvgBits(), result.spaceSize(), result.exhaustive(), result.modelEvaluations(),
                o.fullPrecision(), o.uniform(), front, best, evaluated);
        try {
            Files.createDirectories(outDir);
            Files.writeString(outDir.resolve("search.json"), JSON.writeValueAsString(summary));
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot write to " + outDir + ": " + e.getMessage(), e);
        }
        chart(o).write(outDir);
        return summary;
    }

    private static Report chart(Tuning.Outcome o) {
        String name = o.objectiveName();
        Report rep = new Report("kvq tune: " + o.model() + ", objective " + name);
        Map<String, List<double[]>> series = new LinkedHashMap<>();
        series.put("evaluated", o.search().evaluated().stream().filter(Tuner.Point::feasible)
                .map(pt -> new double[] {pt.avgBits(), o.metric(pt)}).toList());
        series.put("Pareto front", o.search().front().stream().map(pt -> new double[] {pt.avgBits(), o.metric(pt)})
                .toList());
        if (!o.uniform().isEmpty()) {
            double limit = Math.max(o.request().search().maxAvgBits(), 8);
            series.put("uniform", o.uniform().entrySet().stream().filter(e -> Pair.parse(e.getKey()).averageBits()
                    <= limit).map(e -> new double[] {Pair.parse(e.getKey()).averageBits(), e.getValue()}).toList());
        }
        rep.chart("pareto.png", "Pareto front: " + name + " against average KV bits", "average KV bits", name, series,
                false);
        return rep;
    }

    private static PointSummary point(Tuning.Outcome o, Tuner.Point pt, String file) {
        return new PointSummary(pt.avgBits(), pt.avgKeyBits(), pt.avgValueBits(), o.objectiveName(),
                pt.feasible() ? o.metric(pt) : null, pt.feasible(), layersLabel(pt.layers()), file);
    }

    /** Per-layer bits in layer order, e.g. {@code KV4 K4V2 KV8}. */
    public static String layersLabel(Map<Integer, LayerBits> layers) {
        StringBuilder sb = new StringBuilder();
        new TreeMap<>(layers).forEach((l, b) -> sb.append(sb.isEmpty() ? "" : " ").append(b.label()));
        return sb.toString();
    }
}
