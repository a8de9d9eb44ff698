package dev.kvq.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Memory sizes as users write them. */
class SizesTest {
    @ParameterizedTest
    @CsvSource({"1048576, 1048576", "10, 10", "4MiB, 4194304", "512kib, 524288", "2GB, 2000000000", "1.5KiB, 1536"})
    void parsesBytesAndUnits(String text, long bytes) {
        assertEquals(bytes, Sizes.parse("--kv-memory", text));
    }
}
