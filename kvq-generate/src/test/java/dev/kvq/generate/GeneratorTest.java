package dev.kvq.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.quantized.FullPrecisionKvCache;
import dev.kvq.config.ModelShape;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The decode loop around a decoder whose every next token is known: "a" continues "bcdefgh\n", then "abc...". */
class GeneratorTest {
    private static final String VOCAB = "abcdefgh\n";
    private static final CharTokenizer TOKENIZER = new CharTokenizer(VOCAB.chars().mapToObj(Character::toString)
            .toList(), UnknownChars.ERROR);

    private static Generator generator(CountingDecoder decoder) {
        ModelShape shape = decoder.config().shape();
        return new Generator(decoder, TOKENIZER, CacheFactory.fullPrecision(shape));
    }

    @Test
    void greedyGenerationFollowsTheModelUntilTheTokenLimit() {
        try (CountingDecoder d = new CountingDecoder(VOCAB.length(), List.of(), 64)) {
            Generator.Result r = generator(d).generate(List.of("a"), Generator.Options.greedy(12), null).results()
                    .getFirst();
            assertEquals("bcdefgh\nabcd", r.text());
            assertEquals("length", r.stopReason());
            assertArrayEquals(new int[] {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3}, r.tokens());
            assertEquals(1, r.promptTokens());
        }
    }

    @Test
    void stopsAtAnEndTokenWithoutKeepingIt() {
        try (CountingDecoder d = new CountingDecoder(VOCAB.length(), List.of(VOCAB.indexOf('\n')), 64)) {
            StringBuilder streamed = new StringBuilder();
            Generator.Result r = generator(d).generate(List.of("e"), new Generator.Options(50, SamplingParams.greedy(),
                    List.of("hx")), (b, token, text) -> streamed.append(text)).results().getFirst();
            assertEquals("fgh", r.text());
            // "h" waited for a possible "hx"; the end token brought it
            assertEquals("fgh", streamed.toString());
            assertEquals("eos", r.stopReason());
            assertArrayEquals(new int[] {5, 6, 7}, r.tokens());
        }
    }

    @Test
    void stopStringCutsTheTextBeforeItAndTheListenerSeesExactlyTheResult() {
        try (CountingDecoder d = new CountingDecoder(VOCAB.length(), List.of(), 64)) {
            List<Integer> tokens = new ArrayList<>();
            StringBuilder streamed = new StringBuilder();
            Generator.Result r = generator(d).generate(List.of("a"), new Generator.Options(50, SamplingParams.greedy(),
                    List.of("fg", "zz")), (b, token, text) -> {
                        tokens.add(token);
                        streamed.append(text);
                    }).results().getFirst();
            assertEquals("bcde", r.text());
            assertEquals("stop", r.stopReason());
            // "f" might have begun "fg": it was held back, and dropped when "g" completed the stop string
            assertEquals("bcde", streamed.toString());
            // every token was announced, the one completing the stop string included
            assertEquals(List.of(1, 2, 3, 4, 5, 6), tokens);
        }
    }

    @Test
    void aBatchOfPromptsOfDifferentLengthsGivesWhatEachGivesAlone() {
        try (CountingDecoder d = new CountingDecoder(VOCAB.length(), List.of(), 64)) {
            Generator g = generator(d);
            List<String> prompts = List.of("a", "cdef", "h");
            List<Generator.Result> batch = g.generate(prompts, Generator.Options.greedy(6), null).results();
            for (int i = 0; i < prompts.size(); i++) {
                Generator.Result alone = g.generate(List.of(prompts.get(i)), Generator.Options.greedy(6), null).results()
                        .getFirst();
                assertEquals(alone.text(), batch.get(i).text(), "prompt " + i);
            }
            assertEquals(List.of("bcdefg", "gh\nabc", "\nabcde"), batch.stream().map(Generator.Result::text).toList());
        }
    }

    @Test
    void theCacheHoldsThePromptAndEveryFedToken() {
        try (CountingDecoder d = new CountingDecoder(VOCAB.length(), List.of(), 64)) {
            List<FullPrecisionKvCache> made = new ArrayList<>();
            ModelShape shape = d.config().shape();
            CacheFactory recording = new CacheFactory() {
                @Override
                public dev.kvq.cache.KvCache newCache() {
                    FullPrecisionKvCache c = new FullPrecisionKvCache(shape);
                    made.add(c);
                    return c;
                }

                @Override
                public dev.kvq.config.PrecisionPlan plan() {
                    return null;
                }

                @Override
                public String describe() {
                    return "recording";
                }
            };
            Generator.Output out = new Generator(d, TOKENIZER, recording).generate(List.of("ab"),
                    Generator.Options.greedy(5), null);
            // prompt (2) plus the 4 generated tokens that were fed back; the 5th was never fed
            assertEquals(6L * 2 * 2 * shape.kvHeads() * shape.headDim(), out.stats().kvBytesFp16());
            assertEquals(4, out.stats().decodeSteps());
            assertEquals(5, out.stats().newTokens());
            assertEquals(1, made.size());
        }
    }

    /**
     * Per decoded token, the loop allocates no more than the decode session it drives: the sampler, the text and
     * the fed token reuse their buffers, so what remains per token is the session's step.
     */
    @Test
    void decodingAllocatesNothingPerTokenBeyondTheSessionStep() {
        int tokens = 2000;
        try (CountingDecoder d = new CountingDecoder(VOCAB.length(), List.of(), tokens + 8)) {
            Generator g = generator(d);
            Generator.Options options = new Generator.Options(tokens, new SamplingParams(0.8, 0, 0.9, 1), List.of());
            ModelShape shape = d.config().shape();
            // both measured after the same warm-up, so both run compiled code
            for (int i = 0; i < 2; i++) {
                g.generate(List.of("a"), options, null);
                sessionBytesPerStep(d, shape, tokens);
            }
            long before = allocated();
            g.generate(List.of("a"), options, null);
            double perToken = (allocated() - before) / (double) tokens;
            double perStep = sessionBytesPerStep(d, shape, tokens);
            assertTrue(perToken <= perStep + 256, "generation allocates " + perToken + " bytes per token, the session "
                    + perStep + " per step");
        }
    }

    private static double sessionBytesPerStep(CountingDecoder d, ModelShape shape, int steps) {
        try (DecodeSession s = new DecodeSession(d, List.of(new FullPrecisionKvCache(shape, steps + 8)))) {
            s.feed(new int[][] {{0}}, false);
            int[][] next = {{1}};
            long start = allocated();
            for (int i = 0; i < steps; i++) {
                s.feed(next, false);
            }
            return (allocated() - start) / (double) steps;
        }
    }

    private static long allocated() {
        return ((com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean()).getCurrentThreadAllocatedBytes();
    }
}
