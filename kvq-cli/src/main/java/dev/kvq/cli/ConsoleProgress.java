package dev.kvq.cli;

import dev.kvq.eval.Progress;
import java.io.Console;
import java.io.PrintWriter;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * Progress of long work on standard error: a progress bar on an interactive terminal; elsewhere (logs, pipes, CI, or
 * with --json) one line every few seconds while work is running, so that a long run is never silent. Work done within
 * the first interval prints nothing.
 */
final class ConsoleProgress implements Progress {
    /** Seconds between two progress lines when standard output is not a terminal. */
    static final long LINE_INTERVAL_SECONDS = 5;

    /** A bar on a terminal (unless {@code json}), else lines on {@code err} every {@value #LINE_INTERVAL_SECONDS} s. */
    static Progress forConsole(PrintWriter err, boolean json) {
        Console console = System.console();
        if (!json && console != null && console.isTerminal()) {
            return new ConsoleProgress();
        }
        return new Lines(err, TimeUnit.SECONDS.toMillis(LINE_INTERVAL_SECONDS), System::nanoTime);
    }

    @Override
    public Task start(String name, long total) {
        ProgressBar bar = new ProgressBarBuilder().setTaskName(name).setInitialMax(total)
                .setStyle(ProgressBarStyle.ASCII).setConsumer(new ConsoleProgressBarConsumer(System.err))
                .setUpdateIntervalMillis(250).continuousUpdate().build();
        return new Task() {
            @Override
            public void step(long n) {
                bar.stepBy(n);
            }

            @Override
            public void message(String text) {
                bar.setExtraMessage(" " + text);
            }

            @Override
            public void close() {
                bar.close();
            }
        };
    }

    /** One line per interval: {@code kvq: NAME 3/7 (43%), 0:12 elapsed, about 0:16 left, MESSAGE}. */
    static final class Lines implements Progress {
        private final PrintWriter err;
        private final long intervalMillis;
        private final LongSupplier nanos;

        Lines(PrintWriter err, long intervalMillis, LongSupplier nanos) {
            this.err = err;
            this.intervalMillis = intervalMillis;
            this.nanos = nanos;
        }

        @Override
        public Task start(String name, long total) {
            LineTask task = new LineTask(name, total);
            task.timer.scheduleAtFixedRate(() -> task.print(false), intervalMillis, intervalMillis, TimeUnit.MILLISECONDS);
            return task;
        }

        private final class LineTask implements Task {
            private final String name;
            private final long total;
            private final long start = nanos.getAsLong();
            private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
                Thread t = new Thread(r, "kvq-progress");
                t.setDaemon(true);
                return t;
            });
            private long done;
            private String text;
            private boolean printed;
            private boolean closed;

            LineTask(String name, long total) {
                this.name = name;
                this.total = total;
            }

            @Override
            public synchronized void step(long n) {
                done += n;
            }

            @Override
            public synchronized void message(String text) {
                this.text = text;
            }

            synchronized void print(boolean last) {
                if (closed) {
                    return;
                }
                double seconds = (nanos.getAsLong() - start) / 1e9;
                StringBuilder sb = new StringBuilder("kvq: ").append(name).append(' ').append(done);
                if (total > 0) {
                    sb.append('/').append(total).append(String.format(" (%.0f%%)", 100.0 * done / total));
                }
                sb.append(", ").append(clock(seconds)).append(last ? " in all" : " elapsed");
                if (!last && total > 0 && done > 0 && done < total) {
                    sb.append(", about ").append(clock(seconds * (total - done) / done)).append(" left");
                }
                if (text != null && !text.isBlank()) {
                    sb.append(", ").append(text.trim());
                }
                err.println(sb);
                err.flush();
                printed = true;
            }

            @Override
            public void close() {
                timer.shutdownNow();
                synchronized (this) {
                    if (printed) {
                        print(true);
                    }
                    closed = true;
                }
            }
        }

        static String clock(double seconds) {
            long s = Math.round(seconds);
            return s >= 3600 ? String.format("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                    : String.format("%d:%02d", s / 60, s % 60);
        }
    }
}
