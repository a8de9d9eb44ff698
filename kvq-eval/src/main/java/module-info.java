/** kvq's evaluation harness: likelihood and agreement, GSM8K, passkey, LongBench, benchmarks, reports. */
module dev.kvq.eval {
    requires transitive dev.kvq.generate;
    requires com.fasterxml.jackson.databind;
    requires org.jfree.jfreechart;
    requires java.desktop;
    requires jieba.analysis;

    exports dev.kvq.eval;

    // the typed results are written as JSON by the command and the library
    opens dev.kvq.eval to com.fasterxml.jackson.databind;
}
