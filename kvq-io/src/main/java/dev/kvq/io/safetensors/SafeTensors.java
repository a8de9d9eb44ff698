package dev.kvq.io.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A safetensors file, memory-mapped: an 8-byte little-endian header length, a JSON header
 * ({@code name -> {dtype, shape, data_offsets}}), then raw little-endian data. Checks every offset against the
 * file size, so a truncated or corrupt file fails with a message that names it.
 */
public final class SafeTensors implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** One tensor: its dtype ({@code F32}, {@code F16}, {@code BF16}, {@code I8}, {@code U8}, {@code I32}, {@code I64}), shape and bytes. */
    public record Tensor(String name, String dtype, long[] shape, MemorySegment data) {
        public long elements() {
            long n = 1;
            for (long s : shape) {
                n *= s;
            }
            return n;
        }

        /** The values as float32 (converting F16/BF16/integers). */
        public float[] floats() {
            int n = Math.toIntExact(elements());
            float[] out = new float[n];
            switch (dtype) {
                case "F32" -> MemorySegment.copy(data, F32, 0, out, 0, n);
                case "F16" -> {
                    for (int i = 0; i < n; i++) {
                        out[i] = Float.float16ToFloat(data.getAtIndex(I16, i));
                    }
                }
                case "BF16" -> {
                    for (int i = 0; i < n; i++) {
                        out[i] = Float.intBitsToFloat((data.getAtIndex(I16, i) & 0xFFFF) << 16);
                    }
                }
                default -> {
                    long[] v = longs();
                    for (int i = 0; i < n; i++) {
                        out[i] = v[i];
                    }
                }
            }
            return out;
        }

        /** The values as longs (integer dtypes; U8 read as unsigned). */
        public long[] longs() {
            int n = Math.toIntExact(elements());
            long[] out = new long[n];
            for (int i = 0; i < n; i++) {
                out[i] = switch (dtype) {
                    case "I8" -> data.get(ValueLayout.JAVA_BYTE, i);
                    case "U8" -> data.get(ValueLayout.JAVA_BYTE, i) & 0xFF;
                    case "I16" -> data.getAtIndex(I16, i);
                    case "I32" -> data.getAtIndex(I32, i);
                    case "I64" -> data.getAtIndex(I64, i);
                    default -> throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "tensor " + name + " is " + dtype
                            + ", not an integer type");
                };
            }
            return out;
        }

        public int[] ints() {
            long[] l = longs();
            int[] out = new int[l.length];
            for (int i = 0; i < l.length; i++) {
                out[i] = (int) l[i];
            }
            return out;
        }

        public int dim(int i) {
            return (int) shape[i];
        }
    }

    private final Path file;
    private final Arena arena;
    private final Map<String, Tensor> tensors;
    private final Map<String, String> metadata;

    private SafeTensors(Path file, Arena arena, Map<String, Tensor> tensors, Map<String, String> metadata) {
        this.file = file;
        this.arena = arena;
        this.tensors = tensors;
        this.metadata = metadata;
    }

    /** Maps {@code file} and reads its header. */
    public static SafeTensors open(Path file) {
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) {
                throw corrupt(file, "it is " + size + " bytes long, shorter than the 8-byte header length");
            }
            MemorySegment all = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long headerLength = all.get(I64, 0);
            if (headerLength <= 0 || headerLength > size - 8) {
                throw corrupt(file, "its header length " + headerLength + " does not fit the file size " + size);
            }
            byte[] header = all.asSlice(8, headerLength).toArray(ValueLayout.JAVA_BYTE);
            JsonNode root;
            try {
                root = JSON.readTree(header);
            } catch (IOException e) {
                throw corrupt(file, "its header is not valid JSON (" + e.getMessage() + ")");
            }
            long dataStart = 8 + headerLength;
            long dataSize = size - dataStart;
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            Map<String, String> metadata = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                if (e.getKey().equals("__metadata__")) {
                    e.getValue().fields().forEachRemaining(m -> metadata.put(m.getKey(), m.getValue().asText()));
                    continue;
                }
                JsonNode t = e.getValue();
                String dtype = t.path("dtype").asText();
                JsonNode shapeNode = t.path("shape");
                JsonNode offsets = t.path("data_offsets");
                if (!shapeNode.isArray() || !offsets.isArray() || offsets.size() != 2) {
                    throw corrupt(file, "tensor '" + e.getKey() + "' lacks a shape or data_offsets");
                }
                long[] shape = new long[shapeNode.size()];
                long elements = 1;
                for (int i = 0; i < shape.length; i++) {
                    shape[i] = shapeNode.get(i).asLong();
                    elements *= shape[i];
                }
                long begin = offsets.get(0).asLong();
                long end = offsets.get(1).asLong();
                int width = width(dtype);
                if (width == 0) {
                    throw corrupt(file, "tensor '" + e.getKey() + "' has unsupported dtype " + dtype);
                }
                if (begin < 0 || end < begin || end > dataSize || end - begin != elements * width) {
                    throw corrupt(file, "tensor '" + e.getKey() + "' has data_offsets [" + begin + ", " + end
                            + "] that do not fit its shape or the file (" + dataSize + " data bytes)");
                }
                tensors.put(e.getKey(), new Tensor(e.getKey(), dtype, shape, all.asSlice(dataStart + begin, end - begin)));
            }
            return new SafeTensors(file, arena, Collections.unmodifiableMap(tensors),
                    Collections.unmodifiableMap(metadata));
        } catch (NoSuchFileException e) {
            arena.close();
            throw new KvqException(ErrorCode.IO, "safetensors file " + file + " does not exist");
        } catch (IOException e) {
            arena.close();
            throw new KvqException(ErrorCode.IO, "cannot read safetensors file " + file + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static int width(String dtype) {
        return switch (dtype) {
            case "F32", "I32" -> 4;
            case "F16", "BF16", "I16" -> 2;
            case "I8", "U8", "BOOL" -> 1;
            case "I64", "F64" -> 8;
            default -> 0;
        };
    }

    private static KvqException corrupt(Path file, String what) {
        return new KvqException(ErrorCode.CORRUPT_DATA, "safetensors file " + file + " is corrupt: " + what);
    }

    public Path file() {
        return file;
    }

    public Set<String> names() {
        return tensors.keySet();
    }

    public boolean contains(String name) {
        return tensors.containsKey(name);
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    /** The tensor called {@code name}; fails naming the file when absent. */
    public Tensor tensor(String name) {
        Tensor t = tensors.get(name);
        if (t == null) {
            List<String> some = new ArrayList<>(tensors.keySet()).subList(0, Math.min(5, tensors.size()));
            throw new KvqException(ErrorCode.CORRUPT_DATA, file + " has no tensor '" + name + "' (it holds "
                    + tensors.size() + " tensors, e.g. " + some + ")");
        }
        return t;
    }

    @Override
    public void close() {
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }
}
