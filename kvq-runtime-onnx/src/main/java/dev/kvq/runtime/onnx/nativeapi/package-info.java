/**
 * A small java.lang.foreign binding of ONNX Runtime's C API (IoBinding, tensors over caller-owned memory) and of
 * CUDA's runtime (device memory), for what ONNX Runtime's Java API cannot do: run a session on inputs and outputs
 * that live in memory kvq owns, GPU memory included, so that a decode step moves only its new data.
 *
 * <p>Internal to {@code dev.kvq.runtime.onnx}; the package is not exported. The calls into native code are
 * restricted methods: give the JVM {@code --enable-native-access=dev.kvq.runtime.onnx} (or {@code ALL-UNNAMED} on
 * the class path), or it warns once.
 */
package dev.kvq.runtime.onnx.nativeapi;
