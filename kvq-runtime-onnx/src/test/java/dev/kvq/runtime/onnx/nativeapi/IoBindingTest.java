package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Runs through IoBinding over memory the test owns and compares with ONNX Runtime Java's own {@code run}. */
class IoBindingTest {
    private static final Map<String, TensorElementType> CAST_OUTPUTS = castOutputs();

    private final OrtEnvironment env = OrtEnvironment.getEnvironment();
    private final List<AutoCloseable> closeLast = new ArrayList<>();
    private HostMemory memory;

    @BeforeEach
    void open() {
        memory = new HostMemory();
    }

    @AfterEach
    void closeAll() throws Exception {
        for (int i = closeLast.size() - 1; i >= 0; i--) {
            closeLast.get(i).close();
        }
        memory.close();
    }

    @Test
    void boundHostMemoryGivesWhatSessionRunGives() throws OrtException {
        OrtSession session = castSession();
        IoBinding binding = track(IoBinding.create(session));
        float[] x = {0.5f, -1.25f, 3f, 1e6f, -0f, 7.75f};
        byte[] q = {0, 1, 2, (byte) 200, (byte) 255, 7};
        long xBlock = memory.allocate(4L * CastModel.ELEMENTS);
        long qBlock = memory.allocate(CastModel.ELEMENTS);
        memory.upload(MemorySegment.ofArray(x), 0, xBlock, 4L * CastModel.ELEMENTS);
        memory.upload(MemorySegment.ofArray(q), 0, qBlock, CastModel.ELEMENTS);
        binding.bindInput("x", tensor(xBlock, TensorElementType.FLOAT, CastModel.SHAPE));
        binding.bindInput(NativeString.of("q"), tensor(qBlock, TensorElementType.UINT8, CastModel.SHAPE));
        Map<String, Long> outputs = bindCastOutputs(binding);

        binding.run();

        Map<String, byte[]> expected = castRun(session, x, q);
        for (Map.Entry<String, Long> output : outputs.entrySet()) {
            assertArrayEquals(expected.get(output.getKey()), download(output.getValue(), expected.get(
                    output.getKey()).length), output.getKey());
        }
        float[] y = new float[CastModel.ELEMENTS];
        memory.download(outputs.get("y"), MemorySegment.ofArray(y), 0, 4L * y.length);
        assertArrayEquals(new float[] {0.5f, -0.25f, 5f, 1e6f + 200, 255f, 14.75f}, y);
    }

    @Test
    void aSecondRunReadsInputsChangedInPlace() throws OrtException {
        OrtSession session = castSession();
        IoBinding binding = track(IoBinding.create(session));
        long xBlock = memory.allocate(4L * CastModel.ELEMENTS);
        long qBlock = memory.allocate(CastModel.ELEMENTS);
        binding.bindInput("x", tensor(xBlock, TensorElementType.FLOAT, CastModel.SHAPE));
        binding.bindInput("q", tensor(qBlock, TensorElementType.UINT8, CastModel.SHAPE));
        Map<String, Long> outputs = bindCastOutputs(binding);
        binding.run();
        assertArrayEquals(new byte[4 * CastModel.ELEMENTS], download(outputs.get("y"), 4 * CastModel.ELEMENTS),
                "zero inputs give zero outputs");

        float[] x = {1, 2, 3, 4, 5, 6};
        byte[] q = {10, 20, 30, 40, 50, 60};
        MemorySegment.copy(x, 0, memory.segment(xBlock, 24), ValueLayout.JAVA_FLOAT, 0, x.length);
        memory.upload(MemorySegment.ofArray(q), 0, qBlock, q.length);
        binding.run();

        Map<String, byte[]> expected = castRun(session, x, q);
        for (Map.Entry<String, Long> output : outputs.entrySet()) {
            assertArrayEquals(expected.get(output.getKey()), download(output.getValue(), expected.get(
                    output.getKey()).length), output.getKey());
        }
    }

    @Test
    void aDecoderStepsOnItsOwnPresentAsThePast() throws OrtException {
        Path model = Path.of("src/test/resources/tiny-models/base/model.onnx");
        OrtSession session = track(env.createSession(model.toString(), singleThreaded()));
        int layers = 2;
        long[] prompt = {5, 17, 42};
        int capacity = 8;
        long kvBlockBytes = 4L * 2 * capacity * 16;
        long[][] kv = new long[2][2 * layers]; // ping-pong: step s writes kv[s % 2], reads kv[(s + 1) % 2]
        for (long[] side : kv) {
            for (int i = 0; i < side.length; i++) {
                side[i] = memory.allocate(kvBlockBytes);
            }
        }
        long logits = memory.allocate(4L * prompt.length * 384);
        long ids = memory.allocate(8L * capacity);
        long mask = memory.allocate(8L * capacity);
        long positions = memory.allocate(8L * capacity);
        IoBinding binding = track(IoBinding.create(session));

        // Step 0: the prompt, over an empty past (zero-length tensors over the capacity blocks).
        memory.upload(MemorySegment.ofArray(prompt), 0, ids, 8L * prompt.length);
        memory.upload(MemorySegment.ofArray(new long[] {1, 1, 1, 1}), 0, mask, 32);
        memory.upload(MemorySegment.ofArray(new long[] {0, 1, 2, 3}), 0, positions, 32);
        bindStep(binding, layers, ids, mask, positions, kv[1], kv[0], logits, 0, prompt.length);
        binding.run();
        Map<String, OnnxTensor> javaInputs = decoderInputs(layers, prompt, 0, null);
        Map<String, float[]> javaOutputs;
        try (OrtSession.Result result = session.run(javaInputs)) {
            javaOutputs = floats(result);
        }
        closeAll(javaInputs);
        assertArrayEquals(javaOutputs.get("logits"), downloadFloats(logits, prompt.length * 384), "prefill logits");
        for (int layer = 0; layer < layers; layer++) {
            assertArrayEquals(javaOutputs.get("present." + layer + ".key"), downloadFloats(kv[0][2 * layer],
                    2 * prompt.length * 16), "prefill present key " + layer);
        }

        // Step 1: one token; the past is step 0's present, read where the run wrote it.
        long[] next = {99};
        memory.upload(MemorySegment.ofArray(next), 0, ids, 8);
        memory.upload(MemorySegment.ofArray(new long[] {3}), 0, positions, 8);
        bindStep(binding, layers, ids, mask, positions, kv[0], kv[1], logits, prompt.length, 1);
        binding.run();
        javaInputs = decoderInputs(layers, next, prompt.length, javaOutputs);
        try (OrtSession.Result result = session.run(javaInputs)) {
            Map<String, float[]> decoded = floats(result);
            assertArrayEquals(decoded.get("logits"), downloadFloats(logits, 384), "decode logits");
            for (int layer = 0; layer < layers; layer++) {
                assertArrayEquals(decoded.get("present." + layer + ".value"), downloadFloats(kv[1][2 * layer + 1],
                        2 * (prompt.length + 1) * 16), "decode present value " + layer);
            }
        }
        closeAll(javaInputs);
    }

    @Test
    void anUnknownNameFailsWithOnnxRuntimesMessage() throws OrtException {
        IoBinding binding = track(IoBinding.create(castSession()));
        NativeTensor x = tensor(memory.allocate(24), TensorElementType.FLOAT, CastModel.SHAPE);
        binding.bindInput("x", x);

        KvqException e = assertThrows(KvqException.class, () -> binding.bindInput("no_such_input", x));
        assertEquals(ErrorCode.RUNTIME_FAILURE, e.code());
        assertTrue(e.getMessage().startsWith("BindInput: ") && e.getMessage().contains("no_such_input"),
                e.getMessage());
    }

    @Test
    void aRunWithAnInputMissingFails() throws OrtException {
        IoBinding binding = track(IoBinding.create(castSession()));
        binding.bindInput("x", tensor(memory.allocate(24), TensorElementType.FLOAT, CastModel.SHAPE));
        bindCastOutputs(binding);
        KvqException e = assertThrows(KvqException.class, binding::run);
        assertTrue(e.getMessage().startsWith("RunWithBinding: "), e.getMessage());
    }

    @Test
    void tensorsCheckTheirMemoryBeforeOnnxRuntimeSeesIt() {
        MemoryInfo cpu = memory.memoryInfo();
        long block = memory.allocate(20);
        assertEquals(ErrorCode.ILLEGAL_ARGUMENT, assertThrows(KvqException.class,
                () -> NativeTensor.of(cpu, block, 20, TensorElementType.FLOAT, 2, 3)).code());
        assertEquals(ErrorCode.ILLEGAL_ARGUMENT, assertThrows(KvqException.class,
                () -> NativeTensor.of(cpu, block, 20, TensorElementType.FLOAT, -1)).code());
        assertEquals(ErrorCode.ILLEGAL_ARGUMENT, assertThrows(KvqException.class,
                () -> NativeTensor.of(cpu, MemorySegment.ofArray(new float[6]), TensorElementType.FLOAT, 2, 3))
                .code());
        try (NativeTensor roomy = NativeTensor.of(cpu, block, 20, TensorElementType.FLOAT, 1, 4)) {
            assertArrayEquals(new long[] {1, 4}, roomy.shape());
            assertEquals(20, roomy.byteLength());
        }
    }

    @Test
    void closingTwiceIsHarmlessAndUseAfterCloseIsRefused() throws OrtException {
        OrtSession session = env.createSession(CastModel.bytes(), singleThreaded()); // closed below
        IoBinding binding = IoBinding.create(session);
        NativeTensor x = NativeTensor.of(memory.memoryInfo(), memory.allocate(24), 24, TensorElementType.FLOAT,
                CastModel.SHAPE);
        binding.bindInput("x", x);
        x.close();
        x.close();
        binding.close();
        binding.close();
        assertEquals(ErrorCode.CLOSED, assertThrows(KvqException.class, binding::run).code());
        assertEquals(ErrorCode.CLOSED, assertThrows(KvqException.class, () -> binding.bindInput("x", x)).code());

        IoBinding orphan = track(IoBinding.create(session));
        session.close();
        assertEquals(ErrorCode.CLOSED, assertThrows(KvqException.class, orphan::run).code());
        assertEquals(ErrorCode.CLOSED, assertThrows(KvqException.class, () -> IoBinding.create(session)).code());
    }

    // ---- the cast model ----

    private OrtSession castSession() throws OrtException {
        return track(env.createSession(CastModel.bytes(), singleThreaded()));
    }

    /** Binds every output of the cast model to a new block; returns output name to block. */
    private Map<String, Long> bindCastOutputs(IoBinding binding) {
        Map<String, Long> blocks = new LinkedHashMap<>();
        CAST_OUTPUTS.forEach((name, type) -> {
            long block = memory.allocate(NativeTensor.byteSize(type, CastModel.SHAPE));
            binding.bindOutput(name, tensor(block, type, CastModel.SHAPE));
            blocks.put(name, block);
        });
        return blocks;
    }

    /** Each output's bytes from ONNX Runtime Java's own run. */
    private Map<String, byte[]> castRun(OrtSession session, float[] x, byte[] q) throws OrtException {
        Map<String, byte[]> bytes = new LinkedHashMap<>();
        try (OnnxTensor xt = OnnxTensor.createTensor(env, java.nio.FloatBuffer.wrap(x), CastModel.SHAPE);
             OnnxTensor qt = OnnxTensor.createTensor(env, ByteBuffer.wrap(q), CastModel.SHAPE, OnnxJavaType.UINT8);
             OrtSession.Result result = session.run(Map.of("x", xt, "q", qt))) {
            for (String name : CAST_OUTPUTS.keySet()) {
                ByteBuffer buffer = ((OnnxTensor) result.get(name).orElseThrow()).getByteBuffer();
                byte[] out = new byte[buffer.remaining()];
                buffer.get(out);
                bytes.put(name, out);
            }
        }
        return bytes;
    }

    private static Map<String, TensorElementType> castOutputs() {
        Map<String, TensorElementType> outputs = new LinkedHashMap<>();
        outputs.put("y", TensorElementType.FLOAT);
        outputs.put("q_copy", TensorElementType.UINT8);
        outputs.put("q_f16", TensorElementType.FLOAT16);
        outputs.put("q_i64", TensorElementType.INT64);
        outputs.put("q_bool", TensorElementType.BOOL);
        return outputs;
    }

    // ---- the decoder ----

    /** Binds one decode step: {@code tokens} new tokens after {@code past} cached ones. */
    private void bindStep(IoBinding binding, int layers, long ids, long mask, long positions, long[] pastBlocks,
                          long[] presentBlocks, long logits, int past, int tokens) {
        binding.bindInput("input_ids", tensor(ids, TensorElementType.INT64, 1, tokens));
        binding.bindInput("attention_mask", tensor(mask, TensorElementType.INT64, 1, past + tokens));
        binding.bindInput("position_ids", tensor(positions, TensorElementType.INT64, 1, tokens));
        binding.bindOutput("logits", tensor(logits, TensorElementType.FLOAT, 1, tokens, 384));
        for (int layer = 0; layer < layers; layer++) {
            String[] kinds = {"key", "value"};
            for (int k = 0; k < 2; k++) {
                binding.bindInput("past_key_values." + layer + "." + kinds[k],
                        tensor(pastBlocks[2 * layer + k], TensorElementType.FLOAT, 1, 2, past, 16));
                binding.bindOutput("present." + layer + "." + kinds[k],
                        tensor(presentBlocks[2 * layer + k], TensorElementType.FLOAT, 1, 2, past + tokens, 16));
            }
        }
    }

    private Map<String, OnnxTensor> decoderInputs(int layers, long[] ids, int past, Map<String, float[]> previous)
            throws OrtException {
        Map<String, OnnxTensor> inputs = new LinkedHashMap<>();
        long[] mask = new long[past + ids.length];
        java.util.Arrays.fill(mask, 1);
        long[] positions = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            positions[i] = past + i;
        }
        inputs.put("input_ids", OnnxTensor.createTensor(env, java.nio.LongBuffer.wrap(ids), new long[] {1, ids.length}));
        inputs.put("attention_mask", OnnxTensor.createTensor(env, java.nio.LongBuffer.wrap(mask),
                new long[] {1, mask.length}));
        inputs.put("position_ids", OnnxTensor.createTensor(env, java.nio.LongBuffer.wrap(positions),
                new long[] {1, ids.length}));
        for (int layer = 0; layer < layers; layer++) {
            for (String kind : new String[] {"key", "value"}) {
                float[] values = previous == null ? new float[0] : previous.get("present." + layer + "." + kind);
                inputs.put("past_key_values." + layer + "." + kind, OnnxTensor.createTensor(env,
                        java.nio.FloatBuffer.wrap(values), new long[] {1, 2, past, 16}));
            }
        }
        return inputs;
    }

    private static Map<String, float[]> floats(OrtSession.Result result) {
        Map<String, float[]> out = new LinkedHashMap<>();
        for (Map.Entry<String, OnnxValue> entry : result) {
            java.nio.FloatBuffer buffer = ((OnnxTensor) entry.getValue()).getFloatBuffer();
            float[] values = new float[buffer.remaining()];
            buffer.get(values);
            out.put(entry.getKey(), values);
        }
        return out;
    }

    private static void closeAll(Map<String, OnnxTensor> tensors) {
        tensors.values().forEach(OnnxTensor::close);
    }

    // ---- helpers ----

    private NativeTensor tensor(long block, TensorElementType type, long... shape) {
        return track(NativeTensor.of(memory.memoryInfo(), block, NativeTensor.byteSize(type, shape), type, shape));
    }

    private byte[] download(long block, int bytes) {
        byte[] out = new byte[bytes];
        memory.download(block, MemorySegment.ofArray(out), 0, bytes);
        return out;
    }

    private float[] downloadFloats(long block, int count) {
        float[] out = new float[count];
        memory.download(block, MemorySegment.ofArray(out), 0, 4L * count);
        return out;
    }

    private static OrtSession.SessionOptions singleThreaded() throws OrtException {
        OrtSession.SessionOptions options = new OrtSession.SessionOptions();
        options.setIntraOpNumThreads(1);
        options.setInterOpNumThreads(1);
        options.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL); // the failing runs are meant to fail
        return options;
    }

    private <T extends AutoCloseable> T track(T resource) {
        closeLast.add(resource);
        return resource;
    }

    static {
        assertEquals(ByteOrder.LITTLE_ENDIAN, ByteOrder.nativeOrder(), "ORT's buffers are read as native order");
    }
}
