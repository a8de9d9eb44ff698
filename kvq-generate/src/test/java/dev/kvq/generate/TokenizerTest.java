package dev.kvq.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.testkit.Repo;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

class TokenizerTest {
    private static final List<String> CHARS = List.of("a", "b", " ", "é", "\n", "😀");

    @Test
    void characterTokenizerRoundTripsItsVocabularyIncludingSupplementaryCharacters() {
        CharTokenizer t = new CharTokenizer(CHARS, UnknownChars.ERROR);
        int[] ids = t.encode("ab é😀\n");
        assertArrayEquals(new int[] {0, 1, 2, 3, 5, 4}, ids);
        assertEquals("ab é😀\n", t.decode(ids));
        assertEquals("é😀", t.decode(ids, 3, 5));
    }

    @Test
    void unknownCharacterFailsWithItsPositionOrIsReplacedAndCounted() {
        KvqException e = assertThrows(KvqException.class, () -> new CharTokenizer(CHARS, UnknownChars.ERROR)
                .encode("abz"));
        assertEquals(ErrorCode.TOKENIZER, e.code());
        assertTrue(e.getMessage().contains("'z' (U+007A) at character 2"), e.getMessage());
        CharTokenizer replacing = new CharTokenizer(CHARS, UnknownChars.replaceWith(" "));
        assertArrayEquals(new int[] {0, 2, 2, 1}, replacing.encode("azzb"));
        assertEquals(2, replacing.replaced());
    }

    @Test
    void characterVocabularyRejectsDuplicatesAndMultiCharacterEntries() {
        assertThrows(KvqException.class, () -> new CharTokenizer(List.of("a", "a"), UnknownChars.ERROR));
        assertThrows(KvqException.class, () -> new CharTokenizer(List.of("ab"), UnknownChars.ERROR));
        assertThrows(KvqException.class, () -> new CharTokenizer(CHARS, UnknownChars.replaceWith("z")));
    }

    @Test
    void characterStreamReturnsEachTokensOwnStringAndRejectsIdsOutsideTheVocabulary() {
        CharTokenizer t = new CharTokenizer(CHARS, UnknownChars.ERROR);
        Tokenizer.TextStream s = t.textStream();
        assertSame(CHARS.get(5), s.next(5));
        assertEquals("a", s.next(0));
        assertThrows(KvqException.class, () -> s.next(6));
    }

    /** The demo model's vocabulary (config.json's kvq_vocab or vocab.json) covers its sample text. */
    @Test
    void demoModelTokenizerLoadsAndRoundTripsItsSampleText() throws Exception {
        ModelDir dir = ModelDir.open(Repo.demoModel());
        try (Tokenizer t = Tokenizers.load(dir)) {
            assertEquals(dir.config().vocabSize(), t.vocabSize());
            String text = java.nio.file.Files.readString(Repo.demoText()).substring(0, 2000);
            assertEquals(text, t.decode(t.encode(text)));
        }
    }

    /** A byte-level BPE (the one of kvq-runtime-onnx's test models): bytes of one character split over tokens. */
    @Test
    void huggingFaceTokenizerRoundTripsAndItsStreamAddsUpToTheWholeDecoding() throws URISyntaxException {
        Path json = Path.of(TokenizerTest.class.getResource("/byte-bpe/tokenizer.json").toURI());
        String text = "ROMEO: But soft, what light — café, naïve, 東京 😀 through yonder window breaks?";
        try (HfTokenizer t = new HfTokenizer(json, 384)) {
            int[] ids = t.encode(text);
            assertTrue(ids.length > 20 && ids.length < text.length() * 4, ids.length + " tokens");
            String whole = t.decode(ids);
            assertEquals(text, whole.strip());
            Tokenizer.TextStream stream = t.textStream();
            StringBuilder streamed = new StringBuilder();
            int empty = 0;
            for (int id : ids) {
                String piece = stream.next(id);
                assertTrue(!piece.contains("\uFFFD"), "a piece holds a broken character: " + piece);
                empty += piece.isEmpty() ? 1 : 0;
                streamed.append(piece);
            }
            assertEquals(whole, streamed.toString());
            assertTrue(empty > 0, "no token ended inside a character; the text does not exercise the stream's wait");
        }
    }
}
