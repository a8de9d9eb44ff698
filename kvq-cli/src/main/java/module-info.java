/** The {@code kvq} command. The only module that writes to standard output and error. */
module dev.kvq.cli {
    requires dev.kvq.api;
    requires dev.kvq.io;
    requires dev.kvq.cache;
    requires dev.kvq.generate;
    requires dev.kvq.eval;
    requires dev.kvq.tuner;
    requires dev.kvq.serve;
    requires me.tongfei.progressbar;
    requires info.picocli;
    requires com.fasterxml.jackson.databind;

    opens dev.kvq.cli to info.picocli;
}
