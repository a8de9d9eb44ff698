package dev.kvq.generate;

import dev.kvq.generate.model.ModelConfig;
import dev.kvq.generate.model.ModelDir;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Finds a model directory's tokenizer: {@code vocab.json} (characters), {@code config.json}'s kvq_vocab, or {@code tokenizer.json}. */
public final class Tokenizers {
    private Tokenizers() {
    }

    public static Tokenizer load(ModelDir dir) {
        return load(dir, UnknownChars.ERROR);
    }

    public static Tokenizer load(ModelDir dir, UnknownChars unknown) {
        if (dir.has("vocab.json")) {
            Path file = dir.root().resolve("vocab.json");
            JsonNode v;
            try {
                v = new ObjectMapper().readTree(Files.readString(file));
            } catch (IOException e) {
                throw KvqException.cannotRead(file, e);
            }
            if (v != null && v.has("type")) {
                if (!"char".equals(v.path("type").asText()) || !v.path("chars").isArray() || v.path("chars").isEmpty()) {
                    throw new KvqException(ErrorCode.MODEL_INVALID, file + " is not a character vocabulary: kvq reads "
                            + "{\"type\": \"char\", \"chars\": [\"a\", \"b\", ...]} with at least one character");
                }
                List<String> chars = new ArrayList<>();
                v.path("chars").forEach(c -> chars.add(c.asText()));
                return checked(dir, new CharTokenizer(chars, unknown));
            }
            // a Hugging Face vocab.json (token -> id) is read through tokenizer.json beside it
            if (!isTokenIds(v) || !dir.has("tokenizer.json")) {
                throw new KvqException(ErrorCode.MODEL_INVALID, file + " is not a vocabulary kvq reads: give a character "
                        + "vocabulary {\"type\": \"char\", \"chars\": [...]}, or a Hugging Face tokenizer.json beside "
                        + "a token -> id vocab.json");
            }
        }
        if (dir.config().charVocab() != null) {
            return checked(dir, new CharTokenizer(dir.config().charVocab(), unknown));
        }
        if (dir.has("tokenizer.json")) {
            return new HfTokenizer(dir.root().resolve("tokenizer.json"), dir.config().vocabSize());
        }
        throw new KvqException(ErrorCode.MODEL_INVALID, dir.root() + " has no tokenizer: add vocab.json ({\"type\": "
                + "\"char\", \"chars\": [...]}) or a Hugging Face tokenizer.json");
    }

    private static boolean isTokenIds(JsonNode v) {
        if (v == null || !v.isObject() || v.isEmpty()) {
            return false;
        }
        for (JsonNode id : v) {
            if (!id.canConvertToInt()) {
                return false;
            }
        }
        return true;
    }

    private static Tokenizer checked(ModelDir dir, CharTokenizer t) {
        if (t.vocabSize() != dir.config().vocabSize()) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "the character vocabulary of " + dir.root() + " has "
                    + t.vocabSize() + " characters but config.json says vocab_size " + dir.config().vocabSize());
        }
        return t;
    }
}
