package dev.kvq.eval;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.awt.BasicStroke;
import java.awt.Color;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/** An HTML report with tables and PNG charts (JFreeChart), written to a directory. */
public final class Report {
    private final String title;
    private final StringBuilder body = new StringBuilder();
    private final List<Map.Entry<String, JFreeChart>> charts = new ArrayList<>();

    public Report(String title) {
        this.title = title;
        System.setProperty("java.awt.headless", "true");
    }

    public Report heading(String text) {
        body.append("<h2>").append(escape(text)).append("</h2>\n");
        return this;
    }

    public Report paragraph(String text) {
        body.append("<p>").append(escape(text)).append("</p>\n");
        return this;
    }

    public Report code(String text) {
        body.append("<pre>").append(escape(text)).append("</pre>\n");
        return this;
    }

    public Report table(List<String> header, List<List<Object>> rows) {
        body.append("<table>\n<tr>");
        header.forEach(h -> body.append("<th>").append(escape(h)).append("</th>"));
        body.append("</tr>\n");
        for (List<Object> row : rows) {
            body.append("<tr>");
            row.forEach(v -> body.append("<td>").append(escape(format(v))).append("</td>"));
            body.append("</tr>\n");
        }
        body.append("</table>\n");
        return this;
    }

    /** Adds a line chart; {@code series} maps a name to points {@code {x, y}}. */
    public Report chart(String file, String chartTitle, String xLabel, String yLabel, Map<String, List<double[]>> series,
                        boolean lines) {
        XYSeriesCollection data = new XYSeriesCollection();
        series.forEach((name, points) -> {
            XYSeries s = new XYSeries(name, false, true);
            points.forEach(p -> s.add(p[0], p[1]));
            data.addSeries(s);
        });
        JFreeChart chart = ChartFactory.createXYLineChart(chartTitle, xLabel, yLabel, data, PlotOrientation.VERTICAL,
                true, false, false);
        XYPlot plot = chart.getXYPlot();
        ((org.jfree.chart.axis.NumberAxis) plot.getRangeAxis()).setAutoRangeIncludesZero(false);
        ((org.jfree.chart.axis.NumberAxis) plot.getDomainAxis()).setAutoRangeIncludesZero(false);
        plot.setBackgroundPaint(Color.WHITE);
        plot.setDomainGridlinePaint(Color.LIGHT_GRAY);
        plot.setRangeGridlinePaint(Color.LIGHT_GRAY);
        XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(lines, true);
        for (int i = 0; i < data.getSeriesCount(); i++) {
            renderer.setSeriesStroke(i, new BasicStroke(2f));
        }
        plot.setRenderer(renderer);
        charts.add(Map.entry(file, chart));
        body.append("<img src=\"").append(escape(file)).append("\" alt=\"").append(escape(chartTitle)).append("\">\n");
        return this;
    }

    /** Writes {@code index.html} and every chart into {@code dir}; returns the page. */
    public Path write(Path dir) {
        try {
            Files.createDirectories(dir);
            for (Map.Entry<String, JFreeChart> c : charts) {
                ChartUtils.saveChartAsPNG(dir.resolve(c.getKey()).toFile(), c.getValue(), 900, 540);
            }
            String html = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + escape(title) + "</title>\n"
                    + "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
                    + "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
                    + "pre{background:#f6f6f6;padding:8px;overflow:auto}img{max-width:100%}</style></head><body>\n<h1>"
                    + escape(title) + "</h1>\n" + body + "</body></html>\n";
            Path page = dir.resolve("index.html");
            Files.writeString(page, html, StandardCharsets.UTF_8);
            return page;
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot write the report to " + dir + ": " + e.getMessage(), e);
        }
    }

    static String format(Object v) {
        if (v == null) {
            return "-";
        }
        if (v instanceof Double d) {
            return Math.abs(d) >= 1000 ? String.format("%,.0f", d) : String.format("%.4g", d);
        }
        if (v instanceof Float f) {
            return String.format("%.4g", f);
        }
        if (v instanceof Long l) {
            return String.format("%,d", l);
        }
        return String.valueOf(v);
    }

    private static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
