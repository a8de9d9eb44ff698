package dev.kvq.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.UnknownChars;
import dev.kvq.generate.spi.Decoder;
import org.junit.jupiter.api.Test;

/** What the server refuses from a Java caller before it listens. */
class KvqServerTest {
    @Test
    void aBudgetThatHoldsNoSequenceOnTheDeviceIsRefusedWithTheFix() {
        CacheFactory device = CacheFactory.fullPrecision(TestServer.MODEL.config().shape(), Placement.DEVICE);
        try (Decoder decoder = Runtimes.discover().get("onnx").open(TestServer.MODEL, "cpu");
             Tokenizer tokenizer = Tokenizers.load(TestServer.MODEL, UnknownChars.ERROR)) {
            KvqException e = assertThrows(KvqException.class, () -> KvqServer.start(decoder, tokenizer, device,
                    new KvqServer.Settings("127.0.0.1", 0, "demo", 1024, 4, 4)));
            assertEquals(ErrorCode.INVALID_CONFIG, e.code(), e.getMessage());
            assertTrue(e.getMessage().contains("holds no sequence on the device")
                    && e.getMessage().contains("--kv-memory"), e.getMessage());
        }
    }
}
