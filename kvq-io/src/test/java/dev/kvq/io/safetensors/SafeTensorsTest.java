package dev.kvq.io.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** safetensors files written here byte by byte from the format's definition, read back. */
class SafeTensorsTest {
    @TempDir
    Path dir;

    private Path write(String header, byte[] data) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h).put(data);
        return Files.write(dir.resolve("t.safetensors"), b.array());
    }

    @Test
    void readsShapesDtypesValuesAndMetadata() throws IOException {
        ByteBuffer data = ByteBuffer.allocate(6 * 4 + 2 * 8).order(ByteOrder.LITTLE_ENDIAN);
        float[] x = {1.5f, -2f, 0f, 3.25f, 1e-3f, -7f};
        for (float f : x) {
            data.putFloat(f);
        }
        data.putLong(42).putLong(-1);
        Path f = write("{\"__metadata__\":{\"format\":\"pt\"},\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                + "\"data_offsets\":[0,24]},\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[24,40]}}",
                data.array());
        try (SafeTensors st = SafeTensors.open(f)) {
            assertEquals(Map.of("format", "pt"), st.metadata());
            assertTrue(st.contains("x") && st.contains("ids"));
            SafeTensors.Tensor t = st.tensor("x");
            assertEquals("F32", t.dtype());
            assertArrayEquals(new long[] {2, 3}, t.shape());
            assertEquals(3, t.dim(1));
            assertArrayEquals(x, t.floats());
            assertArrayEquals(new long[] {42, -1}, st.tensor("ids").longs());
        }
    }

    @Test
    void offsetsThatDoNotFitTheShapeAreCorruptData() throws IOException {
        Path f = write("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", new byte[12]);
        KvqException e = assertThrows(KvqException.class, () -> SafeTensors.open(f));
        assertEquals(ErrorCode.CORRUPT_DATA, e.code());
        assertTrue(e.getMessage().contains("'x'"), e.getMessage());
    }
}
