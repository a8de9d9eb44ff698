package dev.kvq.runtime.onnx;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtProvider;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.model.ModelConfig;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.DensePast;
import dev.kvq.generate.spi.PastBuffers;
import dev.kvq.generate.spi.QuantizedDecoder;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.RuntimeOptions;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * A decoder exported with external KV inputs and outputs: {@code input_ids}, {@code attention_mask}, optionally
 * {@code position_ids} and {@code use_cache_branch} (merged decoders), {@code past_key_values.{i}.key/value}
 * {@code [B, H, P, D]} in float32 or float16; outputs {@code logits} and {@code present.{i}.key/value}
 * {@code [B, H, P+T, D]}. Past inputs are direct buffers kvq fills from its caches; outputs are written by ONNX
 * Runtime straight into buffers kvq owns (pinned outputs), so the new tokens' K/V are read without a copy.
 */
final class OnnxDecoder implements Decoder {
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private final ModelConfig config;
    private final OrtEnvironment env;
    private final OrtSession session;
    private final String device;
    private final boolean hasPositionIds;
    private final boolean hasUseCacheBranch;
    private final boolean kvHalf;
    private final boolean logitsHalf;
    private final int layers;
    private final int heads;
    private final int dim;
    private final int vocab;
    private final String[] pastKeyNames;
    private final String[] pastValueNames;
    private final String[] presentKeyNames;
    private final String[] presentValueNames;
    private final Set<String> outputNames;
    // Grow-only native buffers, reused across steps.
    private final Growable[] pastKeys;
    private final Growable[] pastValues;
    private final Growable[] presentKeys;
    private final Growable[] presentValues;
    private final Growable logits = new Growable();
    private final Growable scratch32 = new Growable();
    private DensePast past;
    private OrtSession.Result lastResult;
    private final List<OnnxTensor> stepTensors = new ArrayList<>();
    private boolean closed;

    private final java.nio.file.Path modelFile;
    private final RuntimeOptions runtimeOptions;
    /**
     * The rewritten session of the layout asked for last. One at a time: each session has its own device arena, which
     * only grows, so sessions kept for layouts no longer in use would hold memory a long prefill needs.
     */
    private OnnxQuantizedDecoder quantized;

    private OnnxDecoder(ModelConfig config, OrtEnvironment env, OrtSession session, String device,
                        java.nio.file.Path modelFile, RuntimeOptions runtimeOptions) throws OrtException {
        this.modelFile = modelFile;
        this.runtimeOptions = runtimeOptions;
        this.config = config;
        this.env = env;
        this.session = session;
        this.device = device;
        this.layers = config.layers();
        this.heads = config.kvHeads();
        this.dim = config.headDim();
        this.vocab = config.vocabSize();
        Map<String, NodeInfo> inputs = session.getInputInfo();
        Map<String, NodeInfo> outputs = session.getOutputInfo();
        this.outputNames = new LinkedHashSet<>(outputs.keySet());
        require(inputs, "input_ids");
        require(inputs, "attention_mask");
        this.hasPositionIds = inputs.containsKey("position_ids");
        this.hasUseCacheBranch = inputs.containsKey("use_cache_branch");
        require(outputs, "logits");
        int onnxLayers = 0;
        while (inputs.containsKey("past_key_values." + onnxLayers + ".key")) {
            onnxLayers++;
        }
        if (onnxLayers != layers) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "model.onnx has " + onnxLayers + " layers of past_key_values "
                    + "inputs but config.json says num_hidden_layers " + layers + "; they must come from the same model");
        }
        pastKeyNames = new String[layers];
        pastValueNames = new String[layers];
        presentKeyNames = new String[layers];
        presentValueNames = new String[layers];
        Boolean half = null;
        for (int l = 0; l < layers; l++) {
            pastKeyNames[l] = "past_key_values." + l + ".key";
            pastValueNames[l] = "past_key_values." + l + ".value";
            presentKeyNames[l] = "present." + l + ".key";
            presentValueNames[l] = "present." + l + ".value";
            for (String name : new String[] {pastKeyNames[l], pastValueNames[l]}) {
                boolean h = checkKv(require(inputs, name), name);
                if (half != null && half != h) {
                    throw new KvqException(ErrorCode.MODEL_INVALID, "model.onnx mixes float16 and float32 KV inputs");
                }
                half = h;
            }
            checkKv(require(outputs, presentKeyNames[l]), presentKeyNames[l]);
            checkKv(require(outputs, presentValueNames[l]), presentValueNames[l]);
        }
        this.kvHalf = Boolean.TRUE.equals(half);
        TensorInfo logitsInfo = (TensorInfo) outputs.get("logits").getInfo();
        this.logitsHalf = logitsInfo.type == OnnxJavaType.FLOAT16;
        long[] ls = logitsInfo.getShape();
        if (ls.length == 3 && ls[2] > 0 && ls[2] != vocab) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "model.onnx logits have " + ls[2] + " entries but config.json "
                    + "says vocab_size " + vocab);
        }
        Set<String> known = new TreeSet<>(Set.of("input_ids", "attention_mask", "position_ids", "use_cache_branch"));
        for (int l = 0; l < layers; l++) {
            known.add(pastKeyNames[l]);
            known.add(pastValueNames[l]);
        }
        Set<String> unknown = new TreeSet<>(inputs.keySet());
        unknown.removeAll(known);
        if (!unknown.isEmpty()) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "model.onnx has inputs kvq does not know how to feed: "
                    + unknown + "; expected Optimum's text-generation-with-past inputs");
        }
        pastKeys = growables(layers);
        pastValues = growables(layers);
        presentKeys = growables(layers);
        presentValues = growables(layers);
    }

    static OnnxDecoder open(ModelDir dir, RuntimeOptions runtimeOptions) {
        var file = dir.require("model.onnx", "the ONNX decoder with external KV inputs and outputs");
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        try {
            OrtSession.SessionOptions options = sessionOptions(runtimeOptions);
            String actual = runtimeOptions.cuda() ? "cuda:" + runtimeOptions.cudaDevice() : "cpu";
            OrtSession session = env.createSession(file.toString(), options);
            try {
                return new OnnxDecoder(dir.config(), env, session, actual, file, runtimeOptions);
            } catch (RuntimeException | OrtException e) {
                session.close();
                throw e;
            }
        } catch (OrtException e) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "ONNX Runtime cannot load " + file + ": " + e.getMessage(), e);
        }
    }

    /**
     * {@code -Dkvq.onnx.profile=PREFIX}: ONNX Runtime writes a trace of each session's runs, nodes and their host time
     * to {@code PREFIX_<date>.json} when the session closes.
     */
    static final String PROFILE_PROPERTY = "kvq.onnx.profile";

    /** Session options for a runtime configuration: threads, and the CUDA provider where asked. */
    private static OrtSession.SessionOptions sessionOptions(RuntimeOptions runtimeOptions) throws OrtException {
        String device = runtimeOptions.device();
        OrtSession.SessionOptions options = new OrtSession.SessionOptions();
        options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
        options.setSessionLogLevel(ai.onnxruntime.OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
        String profile = System.getProperty(PROFILE_PROPERTY, "");
        if (!profile.isBlank()) {
            // ONNX Runtime's own trace of every run and node, one JSON file per session (tools/ort_profile.py)
            options.enableProfiling(profile);
        }
        if (runtimeOptions.threads() > 0) {
            options.setIntraOpNumThreads(runtimeOptions.threads());
            options.setInterOpNumThreads(1);
        }
        if (runtimeOptions.cuda()) {
            int id = runtimeOptions.cudaDevice();
            if (!OrtEnvironment.getAvailableProviders().contains(OrtProvider.CUDA)) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "device " + device + " needs ONNX Runtime's CUDA "
                        + "execution provider, but this ONNX Runtime offers " + OrtEnvironment.getAvailableProviders()
                        + "; put the onnxruntime_gpu classes and natives on the path (README: GPU) or use --device cpu");
            }
            try {
                options.addCUDA(id);
            } catch (OrtException e) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "cannot enable CUDA device " + id + ": " + e.getMessage()
                        + " (are the CUDA 12 libraries on LD_LIBRARY_PATH?)", e);
            }
        }
        return options;
    }

    @Override
    public QuantizedDecoder quantized(QuantizedPastLayout layout) {
        checkOpen();
        if (quantized == null || !quantized.requested().equals(layout)) {
            closeQuantized();
            try (OrtSession.SessionOptions options = sessionOptions(runtimeOptions)) {
                quantized = new OnnxQuantizedDecoder(this, modelFile, layout, env, options);
            } catch (OrtException e) {
                throw new KvqException(ErrorCode.RUNTIME_FAILURE, "cannot configure ONNX Runtime: " + e.getMessage(), e);
            }
        }
        return quantized;
    }

    private void closeQuantized() {
        if (quantized != null) {
            quantized.close();
            quantized = null;
        }
    }

    boolean logitsHalf() {
        return logitsHalf;
    }

    boolean hasPositionIds() {
        return hasPositionIds;
    }

    boolean hasUseCacheBranch() {
        return hasUseCacheBranch;
    }

    private static NodeInfo require(Map<String, NodeInfo> nodes, String name) {
        NodeInfo n = nodes.get(name);
        if (n == null) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "model.onnx has no '" + name + "'; kvq needs a decoder "
                    + "exported with external KV (optimum-cli export onnx --task text-generation-with-past); it has "
                    + new TreeSet<>(nodes.keySet()).stream().limit(8).toList() + (nodes.size() > 8 ? "..." : ""));
        }
        return n;
    }

    /** Checks a KV node's type and fixed dims against config.json; returns whether it is float16. */
    private boolean checkKv(NodeInfo node, String name) {
        if (!(node.getInfo() instanceof TensorInfo t)) {
            throw new KvqException(ErrorCode.MODEL_INVALID, name + " is not a tensor");
        }
        if (t.type != OnnxJavaType.FLOAT && t.type != OnnxJavaType.FLOAT16) {
            throw new KvqException(ErrorCode.MODEL_INVALID, name + " is " + t.type + "; kvq handles float32 and float16 KV");
        }
        long[] s = t.getShape();
        if (s.length != 4) {
            throw new KvqException(ErrorCode.MODEL_INVALID, name + " has " + s.length + " dims, expected [B, H, P, D]");
        }
        if (s[1] > 0 && s[1] != heads) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "model.onnx " + name + " has " + s[1] + " KV heads but "
                    + "config.json says num_key_value_heads " + heads);
        }
        if (s[3] > 0 && s[3] != dim) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "model.onnx " + name + " has head_dim " + s[3]
                    + " but config.json says " + dim);
        }
        return t.type == OnnxJavaType.FLOAT16;
    }

    @Override
    public ModelConfig config() {
        return config;
    }

    @Override
    public String device() {
        return device;
    }

    @Override
    public boolean halfKv() {
        return kvHalf;
    }

    /** The CUDA provider's kernels index a tensor with 32-bit integers (8 x 32 heads x 1,024 x 16,416 scores failed). */
    @Override
    public long maxAttentionScores() {
        return runtimeOptions.cuda() ? Integer.MAX_VALUE : Long.MAX_VALUE;
    }

    @Override
    public PastBuffers past(int batch, int pastLength) {
        checkOpen();
        long floats = (long) batch * heads * pastLength * dim;
        MemorySegment[] keys = new MemorySegment[layers];
        MemorySegment[] values = new MemorySegment[layers];
        for (int l = 0; l < layers; l++) {
            keys[l] = pastKeys[l].ensure(floats * Float.BYTES).segment();
            values[l] = pastValues[l].ensure(floats * Float.BYTES).segment();
        }
        past = new DensePast(keys, values, batch, pastLength, heads, dim);
        return past;
    }

    @Override
    public Step forward(StepInput in) {
        checkOpen();
        if (past == null || in.past() != past || past.batch() != in.batch() || past.length() != in.pastLength()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "forward needs the buffers of the last past() call");
        }
        releaseStep();
        int b = in.batch();
        int t = in.tokens();
        int p = in.pastLength();
        int total = p + t;
        try {
            Map<String, OnnxTensor> inputs = new HashMap<>();
            inputs.put("input_ids", track(OnnxTensor.createTensor(env, LongBuffer.wrap(in.inputIds()), new long[] {b, t})));
            inputs.put("attention_mask", track(OnnxTensor.createTensor(env, LongBuffer.wrap(in.attentionMask()),
                    new long[] {b, total})));
            if (hasPositionIds) {
                inputs.put("position_ids", track(OnnxTensor.createTensor(env, LongBuffer.wrap(in.positionIds()),
                        new long[] {b, t})));
            }
            if (hasUseCacheBranch) {
                inputs.put("use_cache_branch", track(OnnxTensor.createTensor(env, new boolean[] {p > 0})));
            }
            long[] pastShape = {b, heads, p, dim};
            long pastFloats = (long) b * heads * p * dim;
            Map<String, OnnxValue> pinned = new HashMap<>();
            long[] presentShape = {b, heads, total, dim};
            long presentFloats = (long) b * heads * total * dim;
            for (int l = 0; l < layers; l++) {
                inputs.put(pastKeyNames[l], kvTensor(pastKeys[l], pastFloats, pastShape));
                inputs.put(pastValueNames[l], kvTensor(pastValues[l], pastFloats, pastShape));
                presentKeys[l].ensure(presentFloats * (kvHalf ? 2 : 4));
                presentValues[l].ensure(presentFloats * (kvHalf ? 2 : 4));
                pinned.put(presentKeyNames[l], outputTensor(presentKeys[l], presentFloats, presentShape, kvHalf));
                pinned.put(presentValueNames[l], outputTensor(presentValues[l], presentFloats, presentShape, kvHalf));
            }
            long logitFloats = (long) b * t * vocab;
            logits.ensure(logitFloats * (logitsHalf ? 2 : 4));
            pinned.put("logits", outputTensor(logits, logitFloats, new long[] {b, t, vocab}, logitsHalf));
            // Every output is pinned to a kvq buffer, so none is requested for ONNX Runtime to allocate.
            lastResult = session.run(inputs, Set.of(), pinned);
            return new OnnxStep(b, t, p);
        } catch (OrtException e) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, "ONNX Runtime failed on a step of " + b + "x" + t
                    + " tokens after " + p + ": " + e.getMessage(), e);
        }
    }

    private OnnxTensor kvTensor(Growable buffer, long floats, long[] shape) throws OrtException {
        if (!kvHalf) {
            return track(OnnxTensor.createTensor(env, buffer.floats(floats), shape));
        }
        // float16 model: convert kvq's float32 past into a second buffer of halves
        MemorySegment src = buffer.segment();
        Growable halves = buffer.companion();
        halves.ensure(floats * 2);
        MemorySegment dst = halves.segment();
        for (long i = 0; i < floats; i++) {
            dst.setAtIndex(F16, i, Float.floatToFloat16(src.getAtIndex(F32, i)));
        }
        return track(OnnxTensor.createTensor(env, halves.bytes(floats * 2), shape, OnnxJavaType.FLOAT16));
    }

    private OnnxTensor outputTensor(Growable buffer, long elements, long[] shape, boolean half) throws OrtException {
        if (half) {
            return track(OnnxTensor.createTensor(env, buffer.bytes(elements * 2), shape, OnnxJavaType.FLOAT16));
        }
        return track(OnnxTensor.createTensor(env, buffer.floats(elements), shape));
    }

    private OnnxTensor track(OnnxTensor t) {
        stepTensors.add(t);
        return t;
    }

    private void releaseStep() {
        for (OnnxTensor t : stepTensors) {
            t.close();
        }
        stepTensors.clear();
        if (lastResult != null) {
            lastResult.close();
            lastResult = null;
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        releaseStep();
        closeQuantized();
        try {
            session.close();
        } catch (OrtException e) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, "closing the ONNX session failed: " + e.getMessage(), e);
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new KvqException(ErrorCode.CLOSED, "this decoder was closed");
        }
    }

    private static Growable[] growables(int n) {
        Growable[] g = new Growable[n];
        for (int i = 0; i < n; i++) {
            g[i] = new Growable();
        }
        return g;
    }

    /** The outputs of the current step, read from the pinned buffers. */
    private final class OnnxStep implements Step {
        private final int batch;
        private final int tokens;
        private final int pastLength;

        OnnxStep(int batch, int tokens, int pastLength) {
            this.batch = batch;
            this.tokens = tokens;
            this.pastLength = pastLength;
        }

        @Override
        public void logits(int b, int t, float[] out) {
            HostOutputs.logits(logits.segment(), ((long) b * tokens + t) * vocab, vocab, logitsHalf, out);
        }

        @Override
        public KvView newKeys(int layer, int b) {
            return newTokens(presentKeys[layer], b);
        }

        @Override
        public KvView newValues(int layer, int b) {
            return newTokens(presentValues[layer], b);
        }

        /** Float32 K/V are read where the run wrote them; float16 ones are widened into one shared buffer. */
        @Override
        public boolean concurrentViews() {
            return !kvHalf;
        }

        private KvView newTokens(Growable present, int b) {
            int total = pastLength + tokens;
            long offset = ((long) b * heads * total + pastLength) * dim;
            if (!kvHalf) {
                return new KvView(present.segment(), offset, heads, tokens, dim, (long) total * dim);
            }
            // float16 present: widen the new tokens into float32 scratch ([H, T, D] contiguous)
            long n = (long) heads * tokens * dim;
            Growable wide = present.companion();
            wide.ensure(n * Float.BYTES);
            MemorySegment src = present.segment();
            MemorySegment dst = wide.segment();
            for (int h = 0; h < heads; h++) {
                long from = offset + (long) h * total * dim;
                HostOutputs.widen(src, from, dst, (long) h * tokens * dim, (long) tokens * dim);
            }
            return KvView.contiguous(dst, heads, tokens, dim);
        }
    }

    /** A direct, native-order buffer that only grows; its companion is a second buffer for dtype conversion. */
    private static final class Growable {
        private ByteBuffer buffer = ByteBuffer.allocateDirect(0);
        private MemorySegment segment = MemorySegment.ofBuffer(buffer);
        private Growable companion;

        Growable ensure(long bytes) {
            if (bytes > buffer.capacity()) {
                long size = Math.max(bytes, (long) (buffer.capacity() * 1.5));
                buffer = ByteBuffer.allocateDirect(Math.toIntExact(size)).order(ByteOrder.nativeOrder());
                segment = MemorySegment.ofBuffer(buffer);
            }
            return this;
        }

        MemorySegment segment() {
            return segment;
        }

        java.nio.FloatBuffer floats(long count) {
            return buffer.duplicate().order(ByteOrder.nativeOrder()).limit(Math.toIntExact(count * 4)).slice()
                    .order(ByteOrder.nativeOrder()).asFloatBuffer();
        }

        ByteBuffer bytes(long count) {
            return buffer.duplicate().limit(Math.toIntExact(count)).slice().order(ByteOrder.nativeOrder());
        }

        Growable companion() {
            if (companion == null) {
                companion = new Growable();
            }
            return companion;
        }
    }
}
