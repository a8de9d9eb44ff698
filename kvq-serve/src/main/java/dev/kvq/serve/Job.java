package dev.kvq.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * One HTTP request in the engine: its prompts as token ids, the cache bytes each reserves, and what the engine hands
 * back. A streamed request receives {@link Event}s as tokens are chosen; every request completes {@link #done} once
 * each of its sequences has ended (or the engine failed it). {@link #cancel} (a client gone) makes the engine drop its
 * sequences and free their caches at the next step.
 */
final class Job {
    /** What a streamed request is told, in order. */
    sealed interface Event {
    }

    /** Text of sequence {@code index}, given with one token. */
    record Piece(int index, String text, Choice.Scored logprob) implements Event {
    }

    /** Sequence {@code index} has ended. */
    record Finished(int index, String reason) implements Event {
    }

    /** The engine failed the request. */
    record Failed(ApiError error) implements Event {
    }

    /** The result for one prompt, filled by the engine thread and read after {@link #done}. */
    static final class Choice {
        /** One scored token: its text, log-probability and the most likely alternatives (may be empty). */
        record Scored(String token, double logprob, List<Alternative> top) {
        }

        /** An alternative token and its log-probability. */
        record Alternative(String token, double logprob) {
        }

        final int[] promptIds;
        final long reservedBytes;
        /** The tokens its cache can reach: the prompt and the generated tokens fed back. */
        final int tokensReserved;
        String text = "";
        int completionTokens;
        String finishReason;
        /** The prompt's tokens scored (with echo and logprobs); the first has no log-probability. */
        final List<Scored> promptScores = new ArrayList<>();
        final List<Scored> scores = new ArrayList<>();
        /** Nanoseconds from submission to this sequence's first generated token, or -1 before it. */
        long firstTokenNanos = -1;

        Choice(int[] promptIds, long reservedBytes, int tokensReserved) {
            this.promptIds = promptIds;
            this.reservedBytes = reservedBytes;
            this.tokensReserved = tokensReserved;
        }
    }

    final CompletionRequest request;
    final List<Choice> choices;
    final long submittedNanos = System.nanoTime();
    final CompletableFuture<Void> done = new CompletableFuture<>();
    final LinkedBlockingQueue<Event> events;
    private volatile boolean cancelled;
    /** Sequences still running or waiting (engine thread only). */
    int open;

    Job(CompletionRequest request, List<Choice> choices) {
        this.request = request;
        this.choices = choices;
        this.events = request.stream() ? new LinkedBlockingQueue<>() : null;
        this.open = choices.size();
    }

    long reservedBytes() {
        long sum = 0;
        for (Choice c : choices) {
            sum += c.reservedBytes;
        }
        return sum;
    }

    int mostTokensReserved() {
        int most = 0;
        for (Choice c : choices) {
            most = Math.max(most, c.tokensReserved);
        }
        return most;
    }

    void cancel() {
        cancelled = true;
    }

    boolean cancelled() {
        return cancelled;
    }

    void fail(ApiError error) {
        if (events != null) {
            events.add(new Failed(error));
        }
        done.completeExceptionally(error);
    }
}
