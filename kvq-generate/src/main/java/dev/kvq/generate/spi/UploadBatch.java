package dev.kvq.generate.spi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.util.Arrays;

/**
 * Pieces of one host buffer bound for device memory, uploaded together by {@link DeviceMemory#uploadBatch}: piece
 * {@code i} is {@link #rows(int) rows} rows of {@link #width(int) width} bytes that lie one after the other in the
 * buffer from {@link #srcOffset(int)} on, going to rows {@link #dstPitch(int)} bytes apart from device address {@link
 * #dst(int)} on. A decode step of sequences at different lengths has one piece per sequence and buffer; handing them
 * over as one batch lets a runtime move them in one transfer. Reused from step to step ({@link #clear()}).
 */
public final class UploadBatch {
    /** Longs per piece in {@link #words()}: source offset, destination, destination pitch, width, rows. */
    public static final int WORDS_PER_PIECE = 5;

    private long[] words = new long[16 * WORDS_PER_PIECE];
    private int size;

    /** Adds a piece; nothing is checked until the batch is uploaded. */
    public void add(long srcOffset, long dst, long dstPitch, long width, long rows) {
        if (width < 0 || rows < 0 || dstPitch < width) {
            // messages are built on failure only: a step adds a piece per sequence and buffer
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a piece needs width >= 0, rows >= 0 and a pitch of at"
                    + " least its width, was " + width + ", " + rows + ", " + dstPitch);
        }
        if ((size + 1) * WORDS_PER_PIECE > words.length) {
            words = Arrays.copyOf(words, words.length * 2);
        }
        int at = size * WORDS_PER_PIECE;
        words[at] = srcOffset;
        words[at + 1] = dst;
        words[at + 2] = dstPitch;
        words[at + 3] = width;
        words[at + 4] = rows;
        size++;
    }

    public void clear() {
        size = 0;
    }

    public int size() {
        return size;
    }

    public boolean isEmpty() {
        return size == 0;
    }

    public long srcOffset(int piece) {
        return word(piece, 0);
    }

    public long dst(int piece) {
        return word(piece, 1);
    }

    public long dstPitch(int piece) {
        return word(piece, 2);
    }

    public long width(int piece) {
        return word(piece, 3);
    }

    public long rows(int piece) {
        return word(piece, 4);
    }

    /** Bytes the pieces move. */
    public long bytes() {
        long bytes = 0;
        for (int i = 0; i < size; i++) {
            bytes += width(i) * rows(i);
        }
        return bytes;
    }

    /**
     * The pieces as {@link #WORDS_PER_PIECE} longs each, the first {@code size() * WORDS_PER_PIECE} of the array
     * (not a copy: for runtimes that hand the table on as it is).
     */
    public long[] words() {
        return words;
    }

    private long word(int piece, int field) {
        if (piece < 0 || piece >= size) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "piece " + piece + " of " + size);
        }
        return words[piece * WORDS_PER_PIECE + field];
    }
}
