package dev.kvq.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kvq.generate.CharTokenizer;
import dev.kvq.generate.UnknownChars;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Each metric on fixed predictions; the expected scores are worked out by hand in the comments. */
class LongBenchMetricsTest {
    private static final double EPS = 1e-6;

    @Test
    void qaF1() {
        // "cat sat on mat" (articles and punctuation gone) vs "cat on mat": 3 shared, P 3/4, R 1 -> 6/7
        assertEquals(6.0 / 7, LongBenchMetrics.qaF1("The cat sat on the mat.", "cat on mat"), EPS);
        // [paris] vs [paris, france]: P 1, R 1/2 -> 2/3
        assertEquals(2.0 / 3, LongBenchMetrics.qaF1("Paris", "paris, France"), EPS);
        // multiset counts: dog dog cat vs dog cat cat share dog and one cat: P = R = 2/3
        assertEquals(2.0 / 3, LongBenchMetrics.qaF1("dog dog cat", "dog cat cat"), EPS);
        assertEquals(0, LongBenchMetrics.qaF1("nothing", "else"), EPS);
        assertEquals(0, LongBenchMetrics.qaF1("the a an", "the"), EPS);
        assertEquals(LongBenchMetrics.Metric.QA_F1, LongBenchMetrics.forTask("qasper"));
    }

    @Test
    void qaF1OnJiebaWords() {
        assertEquals(1.0, LongBenchMetrics.qaF1Zh("北京大学", "北京大学"), EPS);
        // jieba: 在 / 北京大学 / 。 -> punctuation dropped -> [在, 北京大学] vs [北京大学]: P 1/2, R 1 -> 2/3
        assertEquals(List.of("在", "北京大学"), LongBenchMetrics.zhWords("在北京大学。"));
        assertEquals(2.0 / 3, LongBenchMetrics.qaF1Zh("在北京大学。", "北京大学"), EPS);
        assertEquals(0, LongBenchMetrics.qaF1Zh("。，！", "北京"), EPS);
    }

    @Test
    void rougeL() {
        // one sentence each; distinct tokens 5 and 5; LCS "the cat on the mat" -> set {the, cat, on, mat} = 4
        assertEquals(0.8, LongBenchMetrics.rougeL("the cat sat on the mat", "the cat is on the mat"), 1e-7);
        // two sentences in swapped order: each is matched by its twin, union 4 of 4 tokens
        assertEquals(1.0, LongBenchMetrics.rougeL("c d. a b", "a b. c d"), 1e-7);
        assertEquals(0, LongBenchMetrics.rougeL("", "a b"), EPS);
        assertEquals(0, LongBenchMetrics.rougeL("...", "a b"), EPS);
        // no lowercasing: "The" and "the" differ; {cat} of ref {the, cat} and hyp {The, cat} -> 1/2, 1/2
        assertEquals(0.5, LongBenchMetrics.rougeL("The cat", "the cat"), 1e-7);
        assertEquals(LongBenchMetrics.Metric.ROUGE_L_ZH, LongBenchMetrics.forTask("vcsum"));
        assertEquals(1.0, LongBenchMetrics.Metric.ROUGE_L_ZH.score("北京大学", "北京大学", List.of()), 1e-7);
    }

    @Test
    void classificationReproducesTheReferenceIteration() {
        List<String> trec = List.of("abbreviation", "entity", "description", "human", "location", "numeric value");
        assertEquals(1.0, LongBenchMetrics.classification("Type: location", "location", trec), EPS);
        assertEquals(0.5, LongBenchMetrics.classification("human or location", "location", trec), EPS);
        assertEquals(0, LongBenchMetrics.classification("entity", "location", trec), EPS);
        // matches [a, ab, abc]; "a" is removed, which skips "ab"; [ab, abc] remain -> 1/2 (not 1 as a clean filter gives)
        assertEquals(0.5, LongBenchMetrics.classification("abc", "abc", List.of("a", "ab", "abc")), EPS);
    }

    @Test
    void retrievalAndCount() {
        // digit runs [12, 3], one equal to 12 -> 1/2
        assertEquals(0.5, LongBenchMetrics.retrieval("Paragraph 12, or maybe 3", "Paragraph 12", "Paragraph (\\d+)"), EPS);
        assertEquals(0, LongBenchMetrics.retrieval("none", "Paragraph 12", "Paragraph (\\d+)"), EPS);
        assertEquals(1.0, LongBenchMetrics.Metric.RETRIEVAL_ZH.score("段落7", "段落7", List.of()), EPS);
        // runs [5, 10], one equal to 5 -> 1/2
        assertEquals(0.5, LongBenchMetrics.count("There are 5 unique paragraphs out of 10", "5"), EPS);
    }

    @Test
    void codeSimilarity() {
        // the first line without `, # or // is compared: identical -> 100
        assertEquals(1.0, LongBenchMetrics.codeSimilarity("\n# comment\nreturn x + 1\n", "return x + 1"), EPS);
        // "abcd" vs "abxd": blocks "ab" and "d", 3 matches of 8 characters -> 2*3/8 = 75
        assertEquals(75, LongBenchMetrics.fuzzyRatio("abcd", "abxd"));
        assertEquals(0.75, LongBenchMetrics.codeSimilarity("abcd", "abxd"), EPS);
        assertEquals(0, LongBenchMetrics.codeSimilarity("foo", "bar"), EPS);
        assertEquals(0, LongBenchMetrics.codeSimilarity("// only comments", "x"), EPS);
    }

    @Test
    void promptTruncationAndPostprocessing() {
        CharTokenizer chars = new CharTokenizer(List.of("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"), UnknownChars.ERROR);
        // 10 tokens over a limit of 6: the first 3 and the last 3
        assertEquals("abchij", LongBench.truncate(chars, "abcdefghij", 6));
        assertEquals("abc", LongBench.truncate(chars, "abc", 6));
        LongBench.Task task = new LongBench.Task("trec", "Q: {input}\nC: {context}", 64, List.of());
        assertEquals("Q: why\nC: text", LongBench.prompt(task, new LongBench.Example("why", "text", List.of(), List.of(), "")));
        assertEquals("Location", LongBench.postprocess("trec", "\n\nLocation\nmore"));
        assertEquals("\nkeep\nall", LongBench.postprocess("qasper", "\nkeep\nall"));
        // best over answers
        LongBench.Example e = new LongBench.Example("", "", List.of("Paris", "city of Paris"), List.of(), "");
        assertEquals(1.0, LongBench.score("qasper", "paris", e), EPS);
    }
}
