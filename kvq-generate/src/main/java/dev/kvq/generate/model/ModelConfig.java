package dev.kvq.generate.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.config.ModelShape;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What kvq reads from a Hugging Face {@code config.json}: the decoder's geometry and special tokens.
 *
 * @param modelType {@code model_type}
 * @param layers {@code num_hidden_layers}
 * @param attentionHeads {@code num_attention_heads}
 * @param kvHeads {@code num_key_value_heads} (defaults to the attention heads)
 * @param headDim {@code head_dim} (defaults to hidden_size / attention heads)
 * @param hiddenSize {@code hidden_size}
 * @param vocabSize {@code vocab_size}
 * @param maxPositions {@code max_position_embeddings}, or 0 when absent
 * @param eosTokenIds {@code eos_token_id} (one or several), possibly empty
 * @param charVocab kvq's character vocabulary ({@code kvq_vocab.chars}) when present, else null
 */
public record ModelConfig(String modelType, int layers, int attentionHeads, int kvHeads, int headDim, int hiddenSize,
                          int vocabSize, int maxPositions, List<Integer> eosTokenIds, List<String> charVocab) {
    private static final ObjectMapper JSON = new ObjectMapper();

    public ModelConfig {
        eosTokenIds = List.copyOf(eosTokenIds);
        charVocab = charVocab == null ? null : List.copyOf(charVocab);
    }

    public ModelShape shape() {
        return new ModelShape(layers, kvHeads, headDim);
    }

    /** Reads and checks {@code config.json}. */
    public static ModelConfig read(Path file) {
        JsonNode root;
        try {
            root = JSON.readTree(Files.readString(file));
        } catch (IOException e) {
            throw KvqException.cannotRead(file, e);
        }
        if (root == null || !root.isObject()) {
            throw new KvqException(ErrorCode.MODEL_INVALID, file + " is not a JSON object");
        }
        int layers = required(file, root, "num_hidden_layers");
        int heads = required(file, root, "num_attention_heads");
        int hidden = root.path("hidden_size").asInt(0);
        int kvHeads = root.path("num_key_value_heads").asInt(heads);
        int headDim = root.hasNonNull("head_dim") ? root.path("head_dim").asInt()
                : hidden > 0 ? hidden / heads : 0;
        if (headDim <= 0) {
            throw new KvqException(ErrorCode.MODEL_INVALID, file + " gives neither head_dim nor hidden_size");
        }
        if (kvHeads <= 0 || heads % kvHeads != 0) {
            throw new KvqException(ErrorCode.MODEL_INVALID, file + ": num_key_value_heads (" + kvHeads
                    + ") must divide num_attention_heads (" + heads + ")");
        }
        List<Integer> eos = new ArrayList<>();
        JsonNode e = root.path("eos_token_id");
        if (e.isInt()) {
            eos.add(e.asInt());
        } else if (e.isArray()) {
            e.forEach(n -> eos.add(n.asInt()));
        }
        List<String> chars = null;
        JsonNode v = root.path("kvq_vocab");
        if (v.isObject() && v.path("chars").isArray()) {
            chars = new ArrayList<>();
            for (JsonNode c : v.path("chars")) {
                chars.add(c.asText());
            }
        }
        return new ModelConfig(root.path("model_type").asText("unknown"), layers, heads, kvHeads, headDim, hidden,
                required(file, root, "vocab_size"), root.path("max_position_embeddings").asInt(0), eos, chars);
    }

    private static int required(Path file, JsonNode root, String field) {
        JsonNode n = root.get(field);
        if (n == null || !n.canConvertToInt() || n.asInt() <= 0) {
            throw new KvqException(ErrorCode.MODEL_INVALID, file + " lacks a positive integer " + field);
        }
        return n.asInt();
    }
}
