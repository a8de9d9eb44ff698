/** KVTuner's offline search for layer-wise KV precision. */
module dev.kvq.tuner {
    requires transitive dev.kvq.eval;
    requires dev.kvq.io;
    requires com.fasterxml.jackson.databind;
    requires moeaframework;
    requires commons.math3;
    requires static jdk.incubator.vector;

    exports dev.kvq.tuner;

    opens dev.kvq.tuner to com.fasterxml.jackson.databind;
}
