package dev.kvq.eval;

/** Where long-running work reports how far it is; the command line shows it as a progress bar. */
@FunctionalInterface
public interface Progress {
    /** A unit of work of {@code total} steps. */
    Task start(String name, long total);

    /** One started unit of work. */
    interface Task extends AutoCloseable {
        void step(long n);

        /** Extra text shown beside the bar (a running metric). */
        default void message(String text) {
        }

        @Override
        void close();
    }

    /** Reports nothing. */
    static Progress none() {
        return (name, total) -> new Task() {
            @Override
            public void step(long n) {
            }

            @Override
            public void close() {
            }
        };
    }
}
