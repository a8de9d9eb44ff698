package dev.kvq.generate;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;

/** A Hugging Face {@code tokenizer.json}, through the Rust tokenizers library (DJL's Java binding, offline). */
public final class HfTokenizer implements Tokenizer {
    private final HuggingFaceTokenizer tokenizer;
    private final int vocabSize;

    public HfTokenizer(Path tokenizerJson, int vocabSize) {
        try {
            this.tokenizer = HuggingFaceTokenizer.newInstance(tokenizerJson, Map.of());
        } catch (IOException | RuntimeException e) {
            throw new KvqException(ErrorCode.TOKENIZER, "cannot load tokenizer " + tokenizerJson + ": " + e.getMessage(), e);
        }
        this.vocabSize = vocabSize;
    }

    @Override
    public int[] encode(String text) {
        Encoding enc = tokenizer.encode(text);
        long[] ids = enc.getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    @Override
    public String decode(int[] ids, int from, int to) {
        long[] l = new long[to - from];
        for (int i = from; i < to; i++) {
            l[i - from] = ids[i];
        }
        return tokenizer.decode(l, true);
    }

    @Override
    public int vocabSize() {
        return vocabSize;
    }

    @Override
    public String describe() {
        return "Hugging Face tokenizer.json";
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
