/** Test support: where ../shared and the goldens are, assumptions that skip with a message, comparisons. */
module dev.kvq.testkit {
    requires transitive dev.kvq.io;
    requires transitive com.fasterxml.jackson.databind;
    requires transitive org.junit.jupiter.api;

    exports dev.kvq.testkit;
}
