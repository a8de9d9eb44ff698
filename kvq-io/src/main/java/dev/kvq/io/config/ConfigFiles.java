package dev.kvq.io.config;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLGenerator;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.Placement;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Reads kvq configuration files (JSON or YAML) with KVTuner's field names, and KVTuner's bare per-layer
 * ({@code layer -> {nbits_key, nbits_value}}) and per-head ({@code layer -> head -> {...}}) files as they
 * are published. Every error names the file, the field and the value.
 */
public final class ConfigFiles {
    /** KVTuner's field names, then kvq's own. */
    static final Set<String> FIELDS = Set.of("nbits", "nbits_key", "nbits_value", "axis_key", "axis_value", "asym",
            "q_group_size", "residual_length", "compute_dtype", "device", "force_quant", "per_layer_quant",
            "per_layer_config", "per_layer_config_path", "per_head_quant", "per_head_config", "per_head_config_path",
            "backend", "runtime", "policy", "backend_options", "optimize", "placement", "scale_dtype");
    /** Flag spellings of KVTuner's scripts, accepted as aliases. */
    private static final Map<String, String> ALIASES = Map.of("k_bits", "nbits_key", "v_bits", "nbits_value",
            "group_size", "q_group_size");

    private static final ObjectMapper YAML = new ObjectMapper(YAMLFactory.builder().build())
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    /** Block-style YAML without a document marker, quoting only what would otherwise read as another type. */
    private static final ObjectMapper YAML_OUT = new ObjectMapper(YAMLFactory.builder()
            .enable(YAMLGenerator.Feature.MINIMIZE_QUOTES).disable(YAMLGenerator.Feature.WRITE_DOC_START_MARKER).build());

    private ConfigFiles() {
    }

    /** What kind of document a file holds. */
    public enum Kind {
        /** A kvq/KVTuner configuration object. */
        CONFIG,
        /** A bare KVTuner per-layer precision file. */
        PER_LAYER,
        /** A bare KVTuner per-head precision file. */
        PER_HEAD
    }

    /**
     * Reads a configuration. A bare per-layer or per-head file is accepted too and gives a configuration
     * with KVTuner's defaults and that file as its per-layer (per-head) precision.
     */
    public static KvQuantConfig load(Path file) {
        JsonNode root = read(file);
        return switch (kindOf(file, root)) {
            case PER_LAYER -> KvQuantConfig.builder().perLayer(perLayer(file, root, "file"), file.toString()).build();
            case PER_HEAD -> KvQuantConfig.builder().perHead(perHead(file, root, "file"), file.toString()).build();
            case CONFIG -> bind(file, (ObjectNode) root, null);
        };
    }

    /** Parses a configuration given as JSON or YAML text (relative file paths resolve against the working directory). */
    public static KvQuantConfig parse(String text) {
        Path pseudo = Path.of("<inline>");
        JsonNode root = readText(pseudo, text);
        return switch (kindOf(pseudo, root)) {
            case PER_LAYER -> KvQuantConfig.builder().perLayer(perLayer(pseudo, root, "text"), null).build();
            case PER_HEAD -> KvQuantConfig.builder().perHead(perHead(pseudo, root, "text"), null).build();
            case CONFIG -> bind(pseudo, (ObjectNode) root, null);
        };
    }

    /**
     * Reads a configuration whose values start from {@code base}: fields present in the file override it.
     * Used by the command line, where flags come first and a file refines them.
     */
    public static KvQuantConfig load(Path file, KvQuantConfig base) {
        JsonNode root = read(file);
        return switch (kindOf(file, root)) {
            case PER_LAYER -> base.toBuilder().perLayer(perLayer(file, root, "file"), file.toString()).build();
            case PER_HEAD -> base.toBuilder().perHead(perHead(file, root, "file"), file.toString()).build();
            case CONFIG -> bind(file, (ObjectNode) root, base);
        };
    }

    /** Reads a KVTuner per-layer file: {@code layer -> {nbits_key, nbits_value}}. */
    public static Map<Integer, LayerBits> loadPerLayer(Path file) {
        JsonNode root = read(file);
        if (kindOf(file, root) != Kind.PER_LAYER) {
            throw KvqException.config(file + " is not a per-layer file: expected 'layer index: {nbits_key: N, "
                    + "nbits_value: N}' entries");
        }
        return perLayer(file, root, "file");
    }

    /** Reads a KVTuner per-head file: {@code layer -> head -> {nbits_key, nbits_value}}, in file order. */
    public static Map<Integer, Map<Integer, LayerBits>> loadPerHead(Path file) {
        JsonNode root = read(file);
        if (kindOf(file, root) != Kind.PER_HEAD) {
            throw KvqException.config(file + " is not a per-head file: expected 'layer: {head: {nbits_key: N, "
                    + "nbits_value: N}}' entries");
        }
        return perHead(file, root, "file");
    }

    /** What a file holds, judged from its top-level keys. */
    public static Kind kindOf(Path file) {
        return kindOf(file, read(file));
    }

    /** Writes a per-layer file in KVTuner's format (integer keys in order, two fields per layer). */
    public static void writePerLayer(Path file, Map<Integer, LayerBits> layers) {
        Map<Integer, Object> doc = new LinkedHashMap<>();
        new TreeSet<>(layers.keySet()).forEach(l -> doc.put(l, bitsMap(layers.get(l))));
        writeYaml(file, doc, null);
    }

    /**
     * Writes {@code config} as a YAML configuration whose per-layer bits come from the per-layer file
     * {@code perLayerPath} ({@code per_layer_config_path}; a relative path resolves beside {@code file}), so the two
     * files together reproduce {@code config} with those bits. {@code comment} heads the file.
     */
    public static void writeWithPerLayerFile(Path file, KvQuantConfig config, String perLayerPath, String comment) {
        Map<String, Object> m = toMap(config);
        m.remove("nbits_key");
        m.remove("nbits_value");
        m.remove("per_layer_config");
        m.put("per_layer_quant", true);
        m.put("per_layer_config_path", perLayerPath);
        writeYaml(file, m, "kvq configuration: " + comment);
    }

    private static void writeYaml(Path file, Map<?, Object> doc, String comment) {
        try {
            Path parent = file.toAbsolutePath().getParent();
            if (parent != null) {
                Files.createDirectories(parent);
            }
            String yaml = YAML_OUT.writeValueAsString(doc);
            Files.writeString(file, comment == null ? yaml : "# " + comment.replace("\n", " ") + "\n" + yaml,
                    StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    /** The configuration as a JSON/YAML-ready map with KVTuner's field names (for reports and round trips). */
    public static Map<String, Object> toMap(KvQuantConfig c) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("backend", c.backend());
        m.put("runtime", c.runtime());
        m.put("device", c.device());
        m.put("policy", c.policy().id());
        m.put("nbits", c.nbits());
        m.put("nbits_key", c.nbitsKey());
        m.put("nbits_value", c.nbitsValue());
        m.put("axis_key", c.axisKey());
        m.put("axis_value", c.axisValue());
        m.put("asym", c.asym());
        m.put("q_group_size", c.groupSize());
        m.put("residual_length", c.residualLength());
        m.put("compute_dtype", c.computeDtype());
        m.put("force_quant", c.forceQuant());
        m.put("per_layer_quant", c.perLayerQuant());
        if (c.perLayerQuant()) {
            Map<Integer, Object> layers = new LinkedHashMap<>();
            c.perLayerConfig().forEach((l, b) -> layers.put(l, bitsMap(b)));
            m.put("per_layer_config", layers);
        }
        m.put("per_head_quant", c.perHeadQuant());
        if (c.perHeadQuant()) {
            Map<Integer, Object> layers = new LinkedHashMap<>();
            c.perHeadConfig().forEach((l, heads) -> {
                Map<Integer, Object> hm = new LinkedHashMap<>();
                heads.forEach((h, b) -> hm.put(h, bitsMap(b)));
                layers.put(l, hm);
            });
            m.put("per_head_config", layers);
        }
        m.put("placement", c.placement().id());
        m.put("scale_dtype", c.scaleDtype());
        if (!c.backendOptions().isEmpty()) {
            m.put("backend_options", c.backendOptions());
        }
        return m;
    }

    /** The configuration as JSON text. */
    public static String toJson(KvQuantConfig c) {
        try {
            return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(toMap(c));
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static Map<String, Object> bitsMap(LayerBits b) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("nbits_key", b.keyBits());
        m.put("nbits_value", b.valueBits());
        return m;
    }

    // ---- reading ----

    private static JsonNode read(Path file) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new KvqException(ErrorCode.IO, "configuration file " + file + " does not exist");
        } catch (IOException e) {
            throw KvqException.cannotRead(file, e);
        }
        return readText(file, text);
    }

    private static JsonNode readText(Path file, String text) {
        boolean json = file.getFileName() != null
                && file.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".json");
        JsonNode root;
        try {
            root = (json ? JSON : YAML).readTree(text);
        } catch (JsonProcessingException e) {
            if (e.getOriginalMessage().startsWith("Trailing token")) {
                throw KvqException.config(file + " goes on after its configuration" + location(e) + "; a configuration "
                        + "file holds one " + (json ? "JSON object" : "YAML document"));
            }
            throw KvqException.config(file + " is not valid " + (json ? "JSON" : "YAML") + ": "
                    + e.getOriginalMessage() + location(e));
        }
        if (root == null || root.isMissingNode() || root.isNull()) {
            throw KvqException.config(file + " is empty");
        }
        if (!root.isObject()) {
            throw KvqException.config(file + " must hold a mapping of fields (or of layer indices), found "
                    + root.getNodeType().toString().toLowerCase(Locale.ROOT));
        }
        return root;
    }

    private static String location(JsonProcessingException e) {
        return e.getLocation() == null ? "" : " (line " + e.getLocation().getLineNr() + ", column "
                + e.getLocation().getColumnNr() + ")";
    }

    private static Kind kindOf(Path file, JsonNode root) {
        List<String> names = new ArrayList<>();
        root.fieldNames().forEachRemaining(names::add);
        if (names.isEmpty()) {
            throw KvqException.config(file + " has no fields");
        }
        boolean allInts = names.stream().allMatch(ConfigFiles::isIndex);
        if (!allInts) {
            if (names.stream().anyMatch(ConfigFiles::isIndex)) {
                throw KvqException.config(file + " mixes layer indices with configuration fields; a precision file "
                        + "holds only 'layer: {...}' entries, a configuration only named fields");
            }
            return Kind.CONFIG;
        }
        JsonNode first = root.get(names.getFirst());
        if (first != null && first.isObject()) {
            Iterator<String> inner = first.fieldNames();
            if (inner.hasNext() && isIndex(inner.next())) {
                return Kind.PER_HEAD;
            }
        }
        return Kind.PER_LAYER;
    }

    private static boolean isIndex(String s) {
        return !s.isEmpty() && s.length() < 10 && s.chars().allMatch(Character::isDigit);
    }

    private static KvQuantConfig bind(Path file, ObjectNode root, KvQuantConfig base) {
        KvQuantConfig.Builder b = base == null ? KvQuantConfig.builder() : base.toBuilder();
        Map<String, JsonNode> fields = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String key = ALIASES.getOrDefault(e.getKey(), e.getKey());
            if (!FIELDS.contains(key)) {
                throw KvqException.config(file + ": unknown field '" + e.getKey() + "'" + suggestion(e.getKey())
                        + "; known fields: " + String.join(", ", new TreeSet<>(FIELDS)));
            }
            if (fields.put(key, e.getValue()) != null) {
                throw KvqException.config(file + ": field '" + key + "' is given twice (once as an alias)");
            }
        }
        Path dir = file.toAbsolutePath().getParent();
        int nbits = fields.containsKey("nbits") ? integer(file, "nbits", fields.get("nbits")) : -999;
        if (nbits != -999) {
            b.nbits(nbits);
        }
        // nbits_key/value keep the base's values unless given (0 means "use nbits", as in KVTuner).
        KvQuantConfig current = base != null ? base : KvQuantConfig.builder().build();
        int nk = fields.containsKey("nbits_key") ? integer(file, "nbits_key", fields.get("nbits_key")) : current.nbitsKey();
        int nv = fields.containsKey("nbits_value") ? integer(file, "nbits_value", fields.get("nbits_value"))
                : current.nbitsValue();
        b.bits(nk, nv);
        int ak = fields.containsKey("axis_key") ? integer(file, "axis_key", fields.get("axis_key")) : current.axisKey();
        int av = fields.containsKey("axis_value") ? integer(file, "axis_value", fields.get("axis_value"))
                : current.axisValue();
        b.axes(ak, av);
        if (fields.containsKey("asym")) {
            b.asym(bool(file, "asym", fields.get("asym")));
        }
        if (fields.containsKey("q_group_size")) {
            b.groupSize(integer(file, "q_group_size", fields.get("q_group_size")));
        }
        if (fields.containsKey("residual_length")) {
            b.residualLength(integer(file, "residual_length", fields.get("residual_length")));
        }
        if (fields.containsKey("compute_dtype")) {
            b.computeDtype(text(file, "compute_dtype", fields.get("compute_dtype")));
        }
        if (fields.containsKey("device")) {
            b.device(text(file, "device", fields.get("device")));
        }
        if (fields.containsKey("force_quant")) {
            b.forceQuant(bool(file, "force_quant", fields.get("force_quant")));
        }
        if (fields.containsKey("backend")) {
            b.backend(text(file, "backend", fields.get("backend")));
        }
        if (fields.containsKey("runtime")) {
            b.runtime(text(file, "runtime", fields.get("runtime")));
        }
        if (fields.containsKey("policy")) {
            b.policy(CachePolicy.parse(text(file, "policy", fields.get("policy"))));
        }
        if (fields.containsKey("placement")) {
            b.placement(Placement.parse(text(file, "placement", fields.get("placement"))));
        }
        if (fields.containsKey("scale_dtype")) {
            b.scaleDtype(text(file, "scale_dtype", fields.get("scale_dtype")));
        }
        if (fields.containsKey("backend_options")) {
            JsonNode opts = fields.get("backend_options");
            if (!opts.isObject()) {
                throw KvqException.config(file + ": backend_options must be a mapping of option names to values");
            }
            opts.fields().forEachRemaining(e -> b.option(e.getKey(), e.getValue().asText()));
        }
        if (fields.containsKey("optimize")) {
            b.option("optimize", String.valueOf(bool(file, "optimize", fields.get("optimize"))));
        }
        bindPrecisionFiles(file, dir, fields, b);
        return b.build();
    }

    private static void bindPrecisionFiles(Path file, Path dir, Map<String, JsonNode> fields, KvQuantConfig.Builder b) {
        Boolean perLayerQuant = fields.containsKey("per_layer_quant") ? bool(file, "per_layer_quant",
                fields.get("per_layer_quant")) : null;
        Boolean perHeadQuant = fields.containsKey("per_head_quant") ? bool(file, "per_head_quant",
                fields.get("per_head_quant")) : null;
        Map<Integer, LayerBits> perLayer = null;
        String perLayerPath = null;
        if (fields.containsKey("per_layer_config") && !fields.get("per_layer_config").isNull()) {
            perLayer = perLayer(file, fields.get("per_layer_config"), "per_layer_config");
        }
        if (fields.containsKey("per_layer_config_path") && !fields.get("per_layer_config_path").isNull()) {
            perLayerPath = text(file, "per_layer_config_path", fields.get("per_layer_config_path"));
            if (perLayer != null) {
                throw KvqException.config(file + ": give per_layer_config or per_layer_config_path, not both");
            }
            Path p = resolve(file, dir, "per_layer_config_path", perLayerPath);
            perLayer = loadPerLayer(p);
            perLayerPath = p.toString();
        }
        Map<Integer, Map<Integer, LayerBits>> perHead = null;
        String perHeadPath = null;
        if (fields.containsKey("per_head_config") && !fields.get("per_head_config").isNull()) {
            perHead = perHead(file, fields.get("per_head_config"), "per_head_config");
        }
        if (fields.containsKey("per_head_config_path") && !fields.get("per_head_config_path").isNull()) {
            perHeadPath = text(file, "per_head_config_path", fields.get("per_head_config_path"));
            if (perHead != null) {
                throw KvqException.config(file + ": give per_head_config or per_head_config_path, not both");
            }
            Path p = resolve(file, dir, "per_head_config_path", perHeadPath);
            perHead = loadPerHead(p);
            perHeadPath = p.toString();
        }
        if (Boolean.TRUE.equals(perLayerQuant) && Boolean.TRUE.equals(perHeadQuant)) {
            throw KvqException.config(file + ": per_layer_quant and per_head_quant cannot both be true: choose one "
                    + "precision file");
        }
        if (Boolean.TRUE.equals(perLayerQuant) && perLayer == null) {
            throw KvqException.config(file + ": per_layer_quant is true but neither per_layer_config nor "
                    + "per_layer_config_path is given");
        }
        if (Boolean.TRUE.equals(perHeadQuant) && perHead == null) {
            throw KvqException.config(file + ": per_head_quant is true but neither per_head_config nor "
                    + "per_head_config_path is given");
        }
        // KVTuner ignores a precision map whose *_quant flag is false; kvq uses it only when the flag is true or
        // absent, so an explicit false keeps the uniform bits.
        if (perLayer != null && !Boolean.FALSE.equals(perLayerQuant)) {
            b.perLayer(perLayer, perLayerPath);
        }
        if (perHead != null && !Boolean.FALSE.equals(perHeadQuant)) {
            if (perLayer != null && !Boolean.FALSE.equals(perLayerQuant)) {
                throw KvqException.config(file + ": per-layer and per-head precision cannot both be used: choose one");
            }
            b.perHead(perHead, perHeadPath);
        }
    }

    private static Path resolve(Path file, Path dir, String field, String value) {
        Path p = Path.of(value);
        if (p.isAbsolute()) {
            if (!Files.isRegularFile(p)) {
                throw new KvqException(ErrorCode.IO, file + ": " + field + " '" + value + "' does not exist");
            }
            return p;
        }
        Path besideConfig = dir == null ? p : dir.resolve(p);
        if (Files.isRegularFile(besideConfig)) {
            return besideConfig;
        }
        if (Files.isRegularFile(p)) {
            return p.toAbsolutePath();
        }
        throw new KvqException(ErrorCode.IO, file + ": " + field + " '" + value + "' not found (looked for "
                + besideConfig + " and " + p.toAbsolutePath() + ")");
    }

    static Map<Integer, LayerBits> perLayer(Path file, JsonNode node, String field) {
        if (!node.isObject()) {
            throw KvqException.config(file + ": " + field + " must map layer indices to {nbits_key, nbits_value}");
        }
        Map<Integer, LayerBits> out = new LinkedHashMap<>();
        node.fields().forEachRemaining(e -> {
            int layer = index(file, field, e.getKey(), "layer");
            out.put(layer, bits(file, field + " layer " + layer, e.getValue()));
        });
        return out;
    }

    static Map<Integer, Map<Integer, LayerBits>> perHead(Path file, JsonNode node, String field) {
        if (!node.isObject()) {
            throw KvqException.config(file + ": " + field + " must map layer indices to {head index: {nbits_key, "
                    + "nbits_value}}");
        }
        Map<Integer, Map<Integer, LayerBits>> out = new LinkedHashMap<>();
        node.fields().forEachRemaining(e -> {
            int layer = index(file, field, e.getKey(), "layer");
            JsonNode heads = e.getValue();
            if (heads == null || !heads.isObject()) {
                throw KvqException.config(file + ": " + field + " layer " + layer + " must map KV head indices to "
                        + "{nbits_key, nbits_value}");
            }
            Map<Integer, LayerBits> hm = new LinkedHashMap<>();
            heads.fields().forEachRemaining(h -> {
                int head = index(file, field + " layer " + layer, h.getKey(), "head");
                hm.put(head, bits(file, field + " layer " + layer + " head " + head, h.getValue()));
            });
            out.put(layer, hm);
        });
        return out;
    }

    private static int index(Path file, String field, String key, String what) {
        if (!isIndex(key)) {
            throw KvqException.config(file + ": " + field + " key '" + key + "' is not a " + what + " index (0, 1, ...)");
        }
        return Integer.parseInt(key);
    }

    private static LayerBits bits(Path file, String where, JsonNode node) {
        if (node == null || !node.isObject()) {
            throw KvqException.config(file + ": " + where + " must be {nbits_key: N, nbits_value: N}, found "
                    + (node == null ? "nothing" : node.toString()));
        }
        Set<String> names = new TreeSet<>();
        node.fieldNames().forEachRemaining(names::add);
        names.removeAll(Set.of("nbits_key", "nbits_value"));
        if (!names.isEmpty()) {
            throw KvqException.config(file + ": " + where + " has unknown field(s) " + names
                    + "; only nbits_key and nbits_value are allowed");
        }
        if (!node.has("nbits_key") || !node.has("nbits_value")) {
            throw KvqException.config(file + ": " + where + " misses " + (node.has("nbits_key") ? "nbits_value"
                    : "nbits_key"));
        }
        int k = integer(file, where + " nbits_key", node.get("nbits_key"));
        int v = integer(file, where + " nbits_value", node.get("nbits_value"));
        try {
            return new LayerBits(k, v);
        } catch (KvqException e) {
            throw KvqException.config(file + ": " + where + ": " + e.getMessage());
        }
    }

    private static int integer(Path file, String field, JsonNode node) {
        if (node.isIntegralNumber() && node.canConvertToInt()) {
            return node.intValue();
        }
        if (node.isTextual() && node.asText().trim().matches("-?\\d{1,9}")) {
            return Integer.parseInt(node.asText().trim());
        }
        throw KvqException.config(file + ": " + field + " must be an integer, was " + node);
    }

    private static boolean bool(Path file, String field, JsonNode node) {
        if (node.isBoolean()) {
            return node.booleanValue();
        }
        if (node.isTextual()) {
            String s = node.asText().trim().toLowerCase(Locale.ROOT);
            if (s.equals("true") || s.equals("false")) {
                return Boolean.parseBoolean(s);
            }
        }
        throw KvqException.config(file + ": " + field + " must be true or false, was " + node);
    }

    private static String text(Path file, String field, JsonNode node) {
        if (node.isTextual() || node.isNumber() || node.isBoolean()) {
            return node.asText();
        }
        throw KvqException.config(file + ": " + field + " must be a string, was " + node);
    }

    private static String suggestion(String unknown) {
        String best = null;
        int bestDistance = 3;
        for (String f : FIELDS) {
            int d = distance(unknown.toLowerCase(Locale.ROOT), f);
            if (d < bestDistance) {
                bestDistance = d;
                best = f;
            }
        }
        return best == null ? "" : " (did you mean '" + best + "'?)";
    }

    private static int distance(String a, String b) {
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + cost);
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }
}
