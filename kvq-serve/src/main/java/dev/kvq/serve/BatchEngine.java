package dev.kvq.serve;

import dev.kvq.KvqException;
import dev.kvq.config.ModelShape;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Continuation;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.DeviceFootprint;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Logits;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Continuous batching over one model: a single thread owns the decoder and a {@link DecodeSession} whose sequences
 * change between steps. Each step first prefills the requests admitted since the last one (the running sequences
 * wait), then decodes one token for every running sequence; a sequence leaves the batch as soon as it ends or its
 * client has gone, and its cache is closed then. Admission is bounded by the KV memory budget: a request reserves the
 * bytes its caches can reach (prompt plus {@code max_tokens}, exactly as the caches count bytes) and waits, in a
 * bounded FIFO queue, until the reservations of the running sequences leave room for it. Under placement device the
 * budget bounds the device store instead ({@link DeviceFootprint}): every sequence there has rows for as many tokens
 * as the longest running one reserved.
 *
 * <p>Every sequence gets its own {@link Continuation} seeded as {@code kvq generate} seeds the prompts of one call, so
 * its tokens do not depend on which requests share the batch.
 */
final class BatchEngine implements AutoCloseable {
    /** The budget and bounds of admission. */
    record Limits(long kvMemoryBytes, int maxQueue, int maxBatch) {
        Limits {
            if (kvMemoryBytes < 1 || maxQueue < 0 || maxBatch < 1) {
                throw new IllegalArgumentException("limits must be positive: " + kvMemoryBytes + ", " + maxQueue + ", "
                        + maxBatch);
            }
        }
    }

    /** The engine's state at one moment. */
    record Snapshot(long bytesHeld, long bytesReserved, long deviceBytes, int activeSequences, int waitingRequests,
                    long reservationExceeded, int peakActiveSequences, long generatedTokens) {
    }

    private static final int[] EMPTY = new int[0];
    private static final long WINDOW_NANOS = 1_000_000_000L;
    private static final long ENGINE_STACK = 16L << 20;

    private final Decoder decoder;
    private final Tokenizer tokenizer;
    private final CacheFactory caches;
    private final ModelShape shape;
    private final Limits limits;
    private final ServerMetrics metrics;
    private final int vocab;
    private final int maxPositions;
    private final int[] eos;
    /** Under placement device, what the store takes; null on the host. */
    private final DeviceFootprint footprint;
    /** Bytes a sequence reserves, by prompt tokens and new tokens (they depend on nothing else). */
    private final Map<Long, Long> reservations = new ConcurrentHashMap<>();

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition work = lock.newCondition();
    /** Requests admitted by no step yet, oldest first; guarded by {@link #lock}. */
    private final ArrayDeque<Job> waiting = new ArrayDeque<>();
    private boolean closed;

    // the engine thread's own
    private final DecodeSession session;
    /** The session's sequences, in its order. */
    private final List<Running> rows = new ArrayList<>();
    private int[][] feed = new int[0][];
    private final Listener listener = new Listener();
    private long windowStart = System.nanoTime();
    private long windowTokens;

    /** The running sequences' reservations as their caches count bytes (the budget's measure on the host). */
    private long bytesReserved;
    private long reservationExceeded;
    private int peakActive;
    private long generated;

    /** The engine's counts at the end of a step, taken together so that readers see one consistent state. */
    private record Published(long bytesHeld, long bytesReserved, long deviceBytes, int active, long reservationExceeded,
                             int peakActive, long generated) {
    }

    // what other threads read
    private volatile Published published = new Published(0, 0, 0, 0, 0, 0, 0);
    private volatile double tokensPerSecond;
    private final Thread thread;

    BatchEngine(Decoder decoder, Tokenizer tokenizer, CacheFactory caches, Limits limits, ServerMetrics metrics) {
        this.decoder = decoder;
        this.tokenizer = tokenizer;
        this.caches = caches;
        this.shape = decoder.config().shape();
        this.limits = limits;
        this.metrics = metrics;
        this.vocab = decoder.config().vocabSize();
        this.maxPositions = decoder.config().maxPositions();
        this.eos = decoder.config().eosTokenIds().stream().mapToInt(Integer::intValue).toArray();
        this.footprint = caches.placement() == Placement.DEVICE ? DeviceFootprint.of(decoder, caches) : null;
        if (footprint != null && footprint.bytes(1, 1) > limits.kvMemoryBytes()) {
            throw KvqException.config("the KV memory budget of " + limits.kvMemoryBytes() + " bytes holds no sequence "
                    + "on the device: one of a single token takes " + footprint.bytes(1, 1) + " bytes there; give more "
                    + "(--kv-memory)");
        }
        this.session = new DecodeSession(decoder, caches.placement());
        // the runtime runs its native forward pass on this thread: as deep a stack as the launcher gives the main thread
        this.thread = Thread.ofPlatform().name("kvq-serve-engine").daemon().stackSize(ENGINE_STACK).unstarted(this::run);
        metrics.bind(this);
        thread.start();
    }

    /**
     * Checks {@code request} against the model and the budget, reserves nothing yet, and queues it; fails with a 400
     * that names the limit when it can never be served, a 429 when the queue is full.
     */
    Job submit(CompletionRequest request) {
        List<Job.Choice> choices = new ArrayList<>(request.prompts().size());
        if (request.prompts().size() > limits.maxBatch()) {
            throw ApiError.invalid("prompt", request.prompts().size() + " prompts in one request, but the server runs at "
                    + "most " + limits.maxBatch() + " sequences at once (--max-batch); send fewer prompts");
        }
        long total = 0;
        for (int i = 0; i < request.prompts().size(); i++) {
            int[] ids = tokens(request.prompts().get(i), request.prompts().size() > 1 ? "prompt[" + i + "]" : "prompt");
            long needed = (long) ids.length + request.maxTokens();
            if (maxPositions > 0 && needed > maxPositions) {
                throw ApiError.invalid("max_tokens", "the prompt (" + ids.length + (ids.length == 1 ? " token" : " tokens") + ") plus max_tokens "
                        + request.maxTokens() + " needs " + needed + " positions, but the model has " + maxPositions
                        + " (its context length); give a max_tokens of at most " + Math.max(0, maxPositions - ids.length)
                        + " or a shorter prompt");
            }
            long bytes = cacheReservation(ids.length, request.maxTokens());
            total += bytes;
            choices.add(new Job.Choice(ids, bytes, tokensReserved(ids.length, request.maxTokens())));
        }
        if (footprint != null) {
            int most = choices.stream().mapToInt(c -> c.tokensReserved).max().orElse(0);
            long device = footprint.bytes(choices.size(), most);
            if (device > limits.kvMemoryBytes()) {
                throw ApiError.invalid("max_tokens", "the request's KV cache can take " + device + " bytes on the "
                        + "device (" + choices.size() + (choices.size() == 1 ? " sequence" : " sequences") + " of up to "
                        + most + " tokens: prompt plus max_tokens), more than the server's whole budget of "
                        + limits.kvMemoryBytes() + " bytes (--kv-memory); give a smaller max_tokens, a shorter prompt or "
                        + "fewer prompts");
            }
        } else if (total > limits.kvMemoryBytes()) {
            throw ApiError.invalid("max_tokens", "the request's KV cache can reach " + total + " bytes (prompt plus "
                    + "max_tokens), more than the server's whole budget of " + limits.kvMemoryBytes() + " bytes "
                    + "(--kv-memory); give a smaller max_tokens, a shorter prompt or fewer prompts");
        }
        Job job = new Job(request, choices);
        lock.lock();
        try {
            if (closed) {
                throw new ApiError(503, "server_error", null, "the server is shutting down");
            }
            if (waiting.size() >= limits.maxQueue()) {
                metrics.rejected();
                throw new ApiError(429, "rate_limit_error", null, "the server is full: " + waiting.size()
                        + " requests wait for KV memory already (--max-queue " + limits.maxQueue() + "); retry later");
            }
            waiting.add(job);
            work.signal();
        } finally {
            lock.unlock();
        }
        return job;
    }

    private int[] tokens(Prompt prompt, String where) {
        return switch (prompt) {
            case Prompt.Tokens t -> {
                for (int id : t.ids()) {
                    if (id < 0 || id >= vocab) {
                        throw ApiError.invalid("prompt", where + " holds token id " + id + ", outside the model's "
                                + "vocabulary of " + vocab + " (ids 0 to " + (vocab - 1) + ")");
                    }
                }
                yield t.ids().clone();
            }
            case Prompt.Text t -> {
                int[] ids;
                try {
                    synchronized (tokenizer) {
                        ids = tokenizer.encode(t.text());
                    }
                } catch (KvqException e) {
                    throw ApiError.invalid("prompt", where + ": " + e.getMessage());
                }
                if (ids.length == 0) {
                    throw ApiError.invalid("prompt", where + " is empty after tokenization; give text the model's "
                            + "tokenizer reads");
                }
                yield ids;
            }
        };
    }

    /** The tokens a sequence's cache can reach: its prompt and the generated tokens fed back. */
    private static int tokensReserved(int promptTokens, int maxTokens) {
        return promptTokens + Math.max(maxTokens - 1, 0);
    }

    /**
     * What {@code sequences} sequences count against the budget: under placement device the store's bytes when each
     * has room for {@code mostTokens}, else the sum of their reservations, {@code reservations}.
     */
    private long committed(int sequences, long reservations, int mostTokens) {
        return footprint == null ? reservations : footprint.bytes(sequences, mostTokens);
    }

    /** The most tokens a running sequence reserved. */
    private int runningMostTokens() {
        int most = 0;
        for (Running r : rows) {
            most = Math.max(most, r.choice.tokensReserved);
        }
        return most;
    }

    /**
     * The most bytes a sequence's cache holds: after its prompt and the {@code maxTokens - 1} generated tokens fed
     * back (the last one chosen is never fed).
     */
    long cacheReservation(int promptTokens, int maxTokens) {
        int steps = Math.max(maxTokens - 1, 0);
        return reservations.computeIfAbsent(((long) promptTokens << 32) | steps,
                k -> caches.bytesHeldAfter(shape, promptTokens, steps, 0));
    }

    /** What one sequence of {@code promptTokens} plus {@code maxTokens} counts against the budget alone. */
    long reservation(int promptTokens, int maxTokens) {
        return footprint != null ? footprint.bytes(1, tokensReserved(promptTokens, maxTokens))
                : cacheReservation(promptTokens, maxTokens);
    }

    /** How many sequences of {@code promptTokens} plus {@code maxTokens} the budget admits at once. */
    long capacity(int promptTokens, int maxTokens) {
        long budget = limits.kvMemoryBytes();
        if (footprint == null) {
            return budget / reservation(promptTokens, maxTokens);
        }
        // the store of n sequences takes at most n stores of one (tiny buffers round up to an element), so budget over
        // one is where the largest n that fits starts; it grows with n, so step up while the next still fits
        int tokens = tokensReserved(promptTokens, maxTokens);
        long n = budget / Math.max(1, footprint.bytes(1, tokens));
        while (n < Integer.MAX_VALUE && footprint.bytes((int) n + 1, tokens) <= budget) {
            n++;
        }
        return n;
    }

    Snapshot snapshot() {
        int queued;
        lock.lock();
        try {
            queued = waiting.size();
        } finally {
            lock.unlock();
        }
        Published p = published;
        return new Snapshot(p.bytesHeld(), p.bytesReserved(), p.deviceBytes(), p.active(), queued,
                p.reservationExceeded(), p.peakActive(), p.generated());
    }

    long budget() {
        return limits.kvMemoryBytes();
    }

    double tokensPerSecond() {
        return tokensPerSecond;
    }

    /** Stops the engine: requests running or waiting fail with a 503; the caches are freed. */
    @Override
    public void close() {
        lock.lock();
        try {
            closed = true;
            work.signal();
        } finally {
            lock.unlock();
        }
        try {
            thread.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    // ---- the engine thread ----

    /** A sequence in the batch. */
    private static final class Running {
        final Job job;
        final int index;
        final Job.Choice choice;
        final Continuation continuation;
        boolean ended;

        Running(Job job, int index, Continuation continuation) {
            this.job = job;
            this.index = index;
            this.choice = job.choices.get(index);
            this.continuation = continuation;
        }
    }

    private void run() {
        while (true) {
            List<Job> joining = admit();
            if (joining == null) {
                break;
            }
            try {
                if (!joining.isEmpty()) {
                    prefill(joining);
                    removeEnded();
                }
                if (!rows.isEmpty()) {
                    decode();
                    removeEnded();
                }
            } catch (RuntimeException e) {
                failAll(new ApiError(500, "server_error", null, "the model failed: " + e.getMessage()));
            }
            publish();
        }
        failAll(new ApiError(503, "server_error", null, "the server is shutting down"));
        session.close();
        publish();
    }

    /**
     * The waiting requests that fit now, oldest first and in order (a large request is not overtaken for ever by
     * small ones), with their bytes reserved; waits while nothing runs and nothing fits. Null once closed.
     */
    private List<Job> admit() {
        List<Job> admitted = new ArrayList<>();
        lock.lock();
        try {
            while (true) {
                if (closed) {
                    return null;
                }
                removeCancelled();
                int sequences = rows.size();
                int most = runningMostTokens();
                for (Job head = waiting.peek(); head != null; head = waiting.peek()) {
                    if (head.cancelled()) {
                        waiting.poll();
                        head.done.cancel(false);
                        continue;
                    }
                    long bytes = head.reservedBytes();
                    int mostWith = Math.max(most, head.mostTokensReserved());
                    if (committed(sequences + head.choices.size(), bytesReserved + bytes, mostWith)
                            > limits.kvMemoryBytes() || sequences + head.choices.size() > limits.maxBatch()) {
                        break;
                    }
                    waiting.poll();
                    bytesReserved += bytes;
                    sequences += head.choices.size();
                    most = mostWith;
                    admitted.add(head);
                }
                if (!admitted.isEmpty() || !rows.isEmpty()) {
                    return admitted;
                }
                tokensPerSecond = 0;
                publish();
                work.awaitUninterruptibly();
                windowStart = System.nanoTime();
                windowTokens = 0;
            }
        } finally {
            lock.unlock();
        }
    }

    private void removeCancelled() {
        boolean any = false;
        for (Running r : rows) {
            any |= r.job.cancelled();
        }
        if (any) {
            removeEnded();
        }
    }

    /** Adds each admitted request's sequences to the session and feeds their prompts while the others wait. */
    private void prefill(List<Job> joining) {
        int first = rows.size();
        boolean anyScored = false;
        for (Job job : joining) {
            Generator.Options options = job.request.maxTokens() == 0 ? null : new Generator.Options(
                    job.request.maxTokens(), job.request.sampling(), job.request.stop());
            for (int i = 0; i < job.choices.size(); i++) {
                Continuation continuation = options == null ? null
                        : new Continuation(options, i, tokenizer.textStream(), eos);
                // storage for the whole reservation is taken at once: a cache that grows by doubling then holds what
                // was reserved, and the device store sizes its rows
                session.add(caches.newCache(), job.choices.get(i).tokensReserved);
                rows.add(new Running(job, i, continuation));
                anyScored |= scoresPrompt(job);
            }
        }
        // prompts scored position by position are fed apart, so the others bring back only their last logits
        feedPrompts(first, false);
        if (anyScored) {
            feedPrompts(first, true);
        }
    }

    private static boolean scoresPrompt(Job job) {
        return job.request.echo() && job.request.logprobs() >= 0;
    }

    private void feedPrompts(int first, boolean scored) {
        int[][] tokens = new int[rows.size()][];
        boolean any = false;
        for (int b = 0; b < tokens.length; b++) {
            Running r = rows.get(b);
            boolean mine = b >= first && scoresPrompt(r.job) == scored;
            tokens[b] = mine ? r.choice.promptIds : EMPTY;
            any |= mine;
        }
        if (!any) {
            return;
        }
        float[][][] logits = session.feed(tokens, scored);
        synchronized (tokenizer) {
            for (int b = first; b < tokens.length; b++) {
                if (tokens[b].length == 0) {
                    continue;
                }
                Running r = rows.get(b);
                float[][] positions = logits[b];
                if (scored) {
                    scorePrompt(r, positions);
                }
                if (r.continuation == null) {
                    finish(r, "length");
                } else {
                    accept(r, positions[positions.length - 1]);
                }
            }
        }
    }

    /** The log-probability of each prompt token after the ones before it (the first has none). */
    private void scorePrompt(Running r, float[][] positions) {
        int[] ids = r.choice.promptIds;
        r.choice.promptScores.add(new Job.Choice.Scored(tokenizer.decode(ids, 0, 1), Double.NaN, List.of()));
        for (int k = 1; k < ids.length; k++) {
            r.choice.promptScores.add(score(positions[k - 1], ids[k], r.job.request.logprobs()));
        }
    }

    private Job.Choice.Scored score(float[] logits, int token, int alternatives) {
        double norm = Logits.logSumExp(logits);
        List<Job.Choice.Alternative> top = new ArrayList<>(alternatives);
        for (int id : Logits.top(logits, alternatives)) {
            top.add(new Job.Choice.Alternative(tokenizer.decode(new int[] {id}), logits[id] - norm));
        }
        return new Job.Choice.Scored(tokenizer.decode(new int[] {token}), logits[token] - norm, top);
    }

    /** One token for every running sequence. */
    private void decode() {
        int n = rows.size();
        if (feed.length != n) {
            feed = new int[n][];
        }
        for (int b = 0; b < n; b++) {
            feed[b] = rows.get(b).continuation.next();
        }
        float[][][] logits = session.feed(feed, false);
        synchronized (tokenizer) {
            for (int b = 0; b < n; b++) {
                accept(rows.get(b), logits[b][0]);
            }
        }
    }

    private void accept(Running r, float[] logits) {
        listener.row = r;
        listener.logits = logits;
        if (!r.continuation.accept(logits, listener, r.index)) {
            Continuation c = r.continuation;
            r.choice.text = c.text();
            r.choice.completionTokens = c.tokens().length;
            finish(r, "length".equals(c.stopReason()) ? "length" : "stop");
        }
        windowTokens++;
        generated++;
        metrics.generated();
    }

    /** Hands each chosen token to its request: its score when asked, and its text when streamed. */
    private final class Listener implements Generator.Listener {
        Running row;
        float[] logits;

        @Override
        public void onToken(int sequence, int token, String text) {
            Job job = row.job;
            Job.Choice choice = row.choice;
            if (choice.firstTokenNanos < 0) {
                choice.firstTokenNanos = System.nanoTime() - job.submittedNanos;
                metrics.firstToken(choice.firstTokenNanos);
            }
            boolean end = contains(eos, token);
            Job.Choice.Scored scored = job.request.logprobs() >= 0 && !end
                    ? score(logits, token, job.request.logprobs()) : null;
            if (scored != null) {
                choice.scores.add(scored);
            }
            if (job.events != null && (!text.isEmpty() || scored != null)) {
                job.events.add(new Job.Piece(sequence, text, scored));
            }
        }
    }

    private static boolean contains(int[] ids, int id) {
        for (int i : ids) {
            if (i == id) {
                return true;
            }
        }
        return false;
    }

    private void finish(Running r, String reason) {
        r.ended = true;
        r.choice.finishReason = reason;
        if (r.job.events != null) {
            r.job.events.add(new Job.Finished(r.index, reason));
        }
    }

    /** Drops ended and cancelled sequences, closing their caches and releasing their reservations. */
    private void removeEnded() {
        for (int b = rows.size() - 1; b >= 0; b--) {
            Running r = rows.get(b);
            if (!r.ended && !r.job.cancelled()) {
                continue;
            }
            session.remove(b);
            rows.remove(b);
            bytesReserved -= r.choice.reservedBytes;
            if (--r.job.open == 0) {
                if (r.job.cancelled()) {
                    r.job.done.cancel(false);
                } else {
                    metrics.completed(System.nanoTime() - r.job.submittedNanos);
                    r.job.done.complete(null);
                }
            }
        }
    }

    private void failAll(ApiError error) {
        for (int b = rows.size() - 1; b >= 0; b--) {
            Running r = rows.get(b);
            session.remove(b);
            rows.remove(b);
            bytesReserved -= r.choice.reservedBytes;
            if (--r.job.open == 0) {
                r.job.fail(error);
            }
        }
        lock.lock();
        try {
            if (closed) {
                for (Job job = waiting.poll(); job != null; job = waiting.poll()) {
                    job.fail(error);
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /** Bytes the running caches hold, each checked against its reservation, with the counts, and the rate of tokens. */
    private void publish() {
        long held = 0;
        for (int b = 0; b < rows.size(); b++) {
            long bytes = session.cache(b).bytesHeld();
            if (bytes > rows.get(b).choice.reservedBytes) {
                reservationExceeded++;
            }
            held += bytes;
        }
        peakActive = Math.max(peakActive, rows.size());
        published = new Published(held, committed(rows.size(), bytesReserved, runningMostTokens()),
                session.deviceBytes(), rows.size(), reservationExceeded, peakActive, generated);
        long now = System.nanoTime();
        if (now - windowStart >= WINDOW_NANOS) {
            tokensPerSecond = windowTokens / ((now - windowStart) / 1e9);
            windowStart = now;
            windowTokens = 0;
        }
    }
}
