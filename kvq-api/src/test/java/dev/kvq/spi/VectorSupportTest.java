package dev.kvq.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The SIMD kernels run exactly when the Vector API's module is in the JVM. The build runs this once with the module
 * (kvq.expect.vector=true) and once without it (false), beside the kernels' own tests.
 */
class VectorSupportTest {
    @Test
    void simdRunsExactlyWhenTheVectorModuleIsPresent() {
        boolean present = ModuleLayer.boot().findModule(VectorSupport.MODULE).isPresent();
        boolean expected = Boolean.parseBoolean(System.getProperty("kvq.expect.vector", String.valueOf(present)));
        assertEquals(expected, present, "jdk.incubator.vector in this JVM");
        assertEquals(expected, VectorSupport.enabled());
        assertEquals(expected, VectorSupport.vectorModule().isPresent());
        assertEquals(expected ? VectorSupport.floatBits() + "-bit" : "scalar", VectorSupport.describe());
        if (expected) {
            assertEquals(VectorSupport.floatBits() / 32, VectorSupport.floatLanes());
        }
    }
}
