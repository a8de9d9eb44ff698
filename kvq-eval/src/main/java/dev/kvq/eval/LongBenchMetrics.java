package dev.kvq.eval;

import com.huaban.analysis.jieba.JiebaSegmenter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * LongBench's task metrics, written for kvq from their definitions (the data README describes them): QA F1, QA F1 on
 * jieba words, ROUGE-L (and on jieba words), classification, retrieval, count and code similarity. Each returns a score
 * in [0, 1] for one prediction against one reference.
 */
public final class LongBenchMetrics {
    private static final Pattern ARTICLES = Pattern.compile("\\b(a|an|the)\\b");
    private static final Pattern DIGITS = Pattern.compile("\\d+");
    private static final String ASCII_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    private static final String CJK_PUNCTUATION = "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」"
            + "『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.";

    private LongBenchMetrics() {
    }

    /** jieba and its dictionary, loaded on first use: only the Chinese metrics need them. */
    private static final class Jieba {
        static final JiebaSegmenter SEGMENTER = new JiebaSegmenter();
    }

    /**
     * Loads jieba's dictionary now (it prints progress to standard output while it loads; callers may redirect it).
     * Only the metrics whose {@link Metric#usesJieba()} is true need it.
     */
    public static void load() {
        Jieba.SEGMENTER.sentenceProcess("加载");
    }

    /** The metric of each LongBench task. */
    public static Metric forTask(String task) {
        return switch (task) {
            case "narrativeqa", "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "musique", "triviaqa" -> Metric.QA_F1;
            case "multifieldqa_zh" -> Metric.QA_F1_ZH;
            case "gov_report", "qmsum", "multi_news", "samsum" -> Metric.ROUGE_L;
            case "dureader", "vcsum" -> Metric.ROUGE_L_ZH;
            case "trec", "lsht" -> Metric.CLASSIFICATION;
            case "passage_retrieval_en" -> Metric.RETRIEVAL;
            case "passage_retrieval_zh" -> Metric.RETRIEVAL_ZH;
            case "passage_count" -> Metric.COUNT;
            case "lcc", "repobench-p" -> Metric.CODE_SIMILARITY;
            default -> throw dev.kvq.KvqException.config("unknown LongBench task '" + task + "'");
        };
    }

    /** A metric: prediction, reference, and the example's class labels (classification only). */
    public enum Metric {
        QA_F1, QA_F1_ZH, ROUGE_L, ROUGE_L_ZH, CLASSIFICATION, RETRIEVAL, RETRIEVAL_ZH, COUNT, CODE_SIMILARITY;

        /** Whether the metric segments Chinese words with jieba (whose dictionary takes a moment to load). */
        public boolean usesJieba() {
            return this == QA_F1_ZH || this == ROUGE_L_ZH;
        }

        public double score(String prediction, String reference, List<String> classes) {
            return switch (this) {
                case QA_F1 -> qaF1(prediction, reference);
                case QA_F1_ZH -> qaF1Zh(prediction, reference);
                case ROUGE_L -> rougeL(prediction, reference);
                case ROUGE_L_ZH -> rougeL(String.join(" ", Jieba.SEGMENTER.sentenceProcess(prediction)),
                        String.join(" ", Jieba.SEGMENTER.sentenceProcess(reference)));
                case CLASSIFICATION -> classification(prediction, reference, classes);
                case RETRIEVAL -> retrieval(prediction, reference, "Paragraph (\\d+)");
                case RETRIEVAL_ZH -> retrieval(prediction, reference, "段落(\\d+)");
                case COUNT -> count(prediction, reference);
                case CODE_SIMILARITY -> codeSimilarity(prediction, reference);
            };
        }
    }

    /** Lowercase, drop ASCII punctuation, replace whole-word articles with a space, collapse whitespace. */
    static String normalize(String s) {
        String lower = s.toLowerCase(Locale.ROOT);
        StringBuilder sb = new StringBuilder(lower.length());
        for (int i = 0; i < lower.length(); i++) {
            char c = lower.charAt(i);
            if (ASCII_PUNCTUATION.indexOf(c) < 0) {
                sb.append(c);
            }
        }
        String noArticles = ARTICLES.matcher(sb).replaceAll(" ");
        return String.join(" ", noArticles.trim().split("\\s+"));
    }

    public static double qaF1(String prediction, String reference) {
        return f1(tokens(normalize(prediction)), tokens(normalize(reference)));
    }

    public static double qaF1Zh(String prediction, String reference) {
        return f1(zhWords(prediction), zhWords(reference));
    }

    private static List<String> tokens(String normalized) {
        List<String> out = new ArrayList<>();
        for (String t : normalized.split(" ")) {
            if (!t.isEmpty()) {
                out.add(t);
            }
        }
        return out;
    }

    /** jieba words (precise mode), each lowercased with ASCII/CJK punctuation and whitespace removed; empties dropped. */
    static List<String> zhWords(String text) {
        List<String> out = new ArrayList<>();
        for (String w : Jieba.SEGMENTER.sentenceProcess(text)) {
            StringBuilder sb = new StringBuilder();
            for (char c : w.toLowerCase(Locale.ROOT).toCharArray()) {
                if (ASCII_PUNCTUATION.indexOf(c) < 0 && CJK_PUNCTUATION.indexOf(c) < 0 && !Character.isWhitespace(c)) {
                    sb.append(c);
                }
            }
            if (!sb.isEmpty()) {
                out.add(sb.toString());
            }
        }
        return out;
    }

    /** Multiset F1 of token lists. */
    static double f1(List<String> prediction, List<String> reference) {
        Map<String, Integer> counts = new HashMap<>();
        for (String t : reference) {
            counts.merge(t, 1, Integer::sum);
        }
        int common = 0;
        for (String t : prediction) {
            Integer c = counts.get(t);
            if (c != null && c > 0) {
                common++;
                counts.put(t, c - 1);
            }
        }
        if (common == 0) {
            return 0;
        }
        double p = common / (double) prediction.size();
        double r = common / (double) reference.size();
        return 2 * p * r / (p + r);
    }

    /**
     * ROUGE-L of the {@code rouge} package with default settings: sentences are the non-empty pieces between dots
     * (whitespace collapsed), tokens split on single spaces; the LCS of every (reference, prediction) sentence pair adds
     * its tokens to one set; recall over distinct reference tokens, precision over distinct prediction tokens.
     */
    public static double rougeL(String prediction, String reference) {
        List<List<String>> hyp = sentences(prediction);
        List<List<String>> ref = sentences(reference);
        if (hyp.isEmpty() || ref.isEmpty()) {
            return 0;
        }
        Set<String> refTokens = new HashSet<>();
        ref.forEach(refTokens::addAll);
        Set<String> hypTokens = new HashSet<>();
        hyp.forEach(hypTokens::addAll);
        Set<String> union = new HashSet<>();
        for (List<String> r : ref) {
            for (List<String> h : hyp) {
                union.addAll(lcs(r, h));
            }
        }
        double recall = union.size() / (double) refTokens.size();
        double precision = union.size() / (double) hypTokens.size();
        return 2 * precision * recall / (precision + recall + 1e-8);
    }

    private static List<List<String>> sentences(String text) {
        List<List<String>> out = new ArrayList<>();
        for (String piece : text.split("\\.", -1)) {
            if (piece.isEmpty()) {
                continue;
            }
            String collapsed = String.join(" ", piece.trim().split("\\s+"));
            out.add(List.of(collapsed.split(" ", -1)));
        }
        return out;
    }

    /** One longest common subsequence: diagonal on a match, else up only when the cell above is strictly greater. */
    static List<String> lcs(List<String> x, List<String> y) {
        int n = x.size();
        int m = y.size();
        int[][] t = new int[n + 1][m + 1];
        for (int i = 1; i <= n; i++) {
            for (int j = 1; j <= m; j++) {
                t[i][j] = x.get(i - 1).equals(y.get(j - 1)) ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1]);
            }
        }
        List<String> out = new ArrayList<>();
        int i = n;
        int j = m;
        while (i > 0 && j > 0) {
            if (x.get(i - 1).equals(y.get(j - 1))) {
                out.add(x.get(i - 1));
                i--;
                j--;
            } else if (t[i - 1][j] > t[i][j - 1]) {
                i--;
            } else {
                j--;
            }
        }
        return out;
    }

    /**
     * Labels that occur in the prediction, minus those that are proper substrings of the gold label (removed while
     * iterating, which skips the label after each removal, as LongBench does); 1/n if the gold label is among the n left.
     */
    public static double classification(String prediction, String reference, List<String> classes) {
        List<String> matches = new ArrayList<>();
        for (String c : classes) {
            if (prediction.contains(c)) {
                matches.add(c);
            }
        }
        for (int i = 0; i < matches.size(); i++) {
            String m = matches.get(i);
            if (reference.contains(m) && !m.equals(reference)) {
                matches.remove(i);
            }
        }
        return matches.contains(reference) ? 1.0 / matches.size() : 0;
    }

    /** The share of digit runs of the prediction that equal the paragraph number of the reference. */
    public static double retrieval(String prediction, String reference, String pattern) {
        Matcher gold = Pattern.compile(pattern).matcher(reference);
        if (!gold.find()) {
            return 0;
        }
        return share(prediction, gold.group(1));
    }

    /** The share of digit runs of the prediction that equal the reference count. */
    public static double count(String prediction, String reference) {
        return share(prediction, reference.trim());
    }

    private static double share(String prediction, String target) {
        Matcher m = DIGITS.matcher(prediction);
        int all = 0;
        int right = 0;
        while (m.find()) {
            all++;
            right += m.group().equals(target) ? 1 : 0;
        }
        return all == 0 ? 0 : right / (double) all;
    }

    /** The first code line of the prediction (no backquote, '#' or '//') against the reference, by fuzzy ratio / 100. */
    public static double codeSimilarity(String prediction, String reference) {
        String line = "";
        for (String l : prediction.replaceFirst("^\n+", "").split("\n", -1)) {
            if (!l.contains("`") && !l.contains("#") && !l.contains("//")) {
                line = l;
                break;
            }
        }
        return fuzzyRatio(line, reference) / 100.0;
    }

    /** {@code round(100 * 2M / T)}: M characters matched by the Ratcliff-Obershelp algorithm, T both lengths. */
    public static int fuzzyRatio(String a, String b) {
        int total = a.length() + b.length();
        if (total == 0) {
            return 100;
        }
        return (int) Math.round(100.0 * 2 * matches(a, 0, a.length(), b, 0, b.length()) / total);
    }

    /** Characters matched: the longest common block, then the same on both sides of it, recursively. */
    private static int matches(String a, int alo, int ahi, String b, int blo, int bhi) {
        int bestI = alo;
        int bestJ = blo;
        int bestSize = 0;
        int[] prev = new int[bhi - blo + 1];
        for (int i = alo; i < ahi; i++) {
            int[] cur = new int[bhi - blo + 1];
            for (int j = blo; j < bhi; j++) {
                if (a.charAt(i) == b.charAt(j)) {
                    int k = prev[j - blo] + 1;
                    cur[j - blo + 1] = k;
                    if (k > bestSize) {
                        bestI = i - k + 1;
                        bestJ = j - k + 1;
                        bestSize = k;
                    }
                }
            }
            prev = cur;
        }
        if (bestSize == 0) {
            return 0;
        }
        return bestSize + matches(a, alo, bestI, b, blo, bestJ)
                + matches(a, bestI + bestSize, ahi, b, bestJ + bestSize, bhi);
    }
}
