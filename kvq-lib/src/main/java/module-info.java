/**
 * kvq as a library: {@link dev.kvq.lib.Kvq} opens a model directory with a KV cache configuration
 * ({@link dev.kvq.config.KvQuantConfig}: a file, a builder, or the defaults), generates and measures through it, and
 * closes with try-with-resources. Runtime and backend are chosen by name in the configuration and found by
 * {@link java.util.ServiceLoader}, on the module path and the class path. Needs no JVM flags: the Vector API is used
 * when its module is present.
 */
module dev.kvq.lib {
    requires transitive dev.kvq.api;
    requires dev.kvq.io;
    requires dev.kvq.generate;
    requires dev.kvq.eval;

    exports dev.kvq.lib;
}
