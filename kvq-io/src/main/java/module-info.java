/**
 * kvq's file formats: configurations and KVTuner's precision files (JSON and YAML, through Jackson), and
 * safetensors tensor files (memory-mapped).
 */
module dev.kvq.io {
    requires transitive dev.kvq.api;
    requires com.fasterxml.jackson.databind;
    requires com.fasterxml.jackson.dataformat.yaml;

    exports dev.kvq.io.config;
    exports dev.kvq.io.safetensors;
}
