package dev.kvq.spi;

import java.util.Optional;

/**
 * Whether kvq's SIMD kernels run. They use the Vector API (the incubating module {@code jdk.incubator.vector}) when
 * that module is in the JVM (the {@code kvq} command adds it; a library user may or may not), and a scalar path
 * otherwise that computes the same codes and values. Nothing here touches a Vector API type: the kernels live in
 * classes named {@code *Simd}, which are loaded only when {@link #enabled()}.
 *
 * <p>{@code -Dkvq.vector.bits=0} turns the Vector API off; 128/256/512 force a width; unset uses the platform's
 * preferred width (kernels need at least 4 float lanes).
 */
public final class VectorSupport {
    /** The Vector API's module. */
    public static final String MODULE = "jdk.incubator.vector";
    private static final int FLOAT_BITS = choose();

    private VectorSupport() {
    }

    /** True when the SIMD kernels run: the module is present and vectors are not turned off. */
    public static boolean enabled() {
        return FLOAT_BITS > 0;
    }

    /** Bits of the float vectors the kernels use, or 0 when {@link #enabled()} is false. */
    public static int floatBits() {
        return FLOAT_BITS;
    }

    /** Float lanes per vector, or 0 when {@link #enabled()} is false. */
    public static int floatLanes() {
        return FLOAT_BITS / Float.SIZE;
    }

    /** Human-readable description for diagnostics ({@code "256-bit"} or {@code "scalar"}). */
    public static String describe() {
        return FLOAT_BITS == 0 ? "scalar" : FLOAT_BITS + "-bit";
    }

    /** The Vector API's module when it is in the boot layer (and readable by the caller's module), else empty. */
    public static Optional<Module> vectorModule() {
        Optional<Module> vector = ModuleLayer.boot().findModule(MODULE);
        vector.ifPresent(m -> {
            // a named kvq module declares the dependence static: read it now that it is there
            Module self = VectorSupport.class.getModule();
            if (!self.canRead(m)) {
                self.addReads(m);
            }
        });
        return vector;
    }

    private static int choose() {
        String prop = System.getProperty("kvq.vector.bits", "").trim();
        if (prop.equals("0") || vectorModule().isEmpty()) {
            return 0;
        }
        int bits = prop.isEmpty() ? PreferredSimd.floatBits() : Integer.parseInt(prop);
        return bits / Float.SIZE < 4 ? 0 : bits;
    }
}
