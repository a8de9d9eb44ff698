package dev.kvq.discovery;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class ProviderRegistryTest {
    record Named(String name) {
    }

    @Test
    void unknownNameListsTheAvailableOnes() {
        var reg = ProviderRegistry.of("backend", List.of(new Named("a"), new Named("b")), Named::name);
        KvqException e = assertThrows(KvqException.class, () -> reg.get("c"));
        assertEquals(ErrorCode.UNKNOWN_PROVIDER, e.code());
        assertTrue(e.getMessage().contains("unknown backend 'c'; available: a, b"), e.getMessage());
    }

    @Test
    void twoProvidersWithOneNameFail() {
        KvqException e = assertThrows(KvqException.class,
                () -> ProviderRegistry.of("backend", List.of(new Named("a"), new Named("a")), Named::name));
        assertEquals(ErrorCode.DUPLICATE_PROVIDER, e.code());
        assertTrue(e.getMessage().contains("two backend providers are named 'a'"), e.getMessage());
    }

    @Test
    void aProviderThatFailsIsReportedAndTheOthersLoad() {
        var reg = ProviderRegistry.of("backend", List.of(new Named("a"), new Named(null), new Named("b")), n -> {
            if (n.name() == null) {
                throw new IllegalStateException("boom");
            }
            return n.name();
        });
        assertEquals(List.of("a", "b"), reg.names());
        assertEquals(1, reg.failures().size());
        assertTrue(reg.failures().getFirst().message().contains("boom"));
    }
}
