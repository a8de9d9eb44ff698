package dev.kvq;

import java.util.Objects;

/**
 * The one exception kvq throws. Unchecked; carries an {@link ErrorCode} and a message that names the
 * offending field or file, the value found, and what is allowed.
 */
public class KvqException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final ErrorCode code;

    public KvqException(ErrorCode code, String message) {
        super(message);
        this.code = Objects.requireNonNull(code, "code");
    }

    public KvqException(ErrorCode code, String message, Throwable cause) {
        super(message, cause);
        this.code = Objects.requireNonNull(code, "code");
    }

    public ErrorCode code() {
        return code;
    }

    /** Shorthand for a configuration error. */
    public static KvqException config(String message) {
        return new KvqException(ErrorCode.INVALID_CONFIG, message);
    }

    /** Shorthand for a combination a backend or runtime cannot run. */
    public static KvqException unsupported(String message) {
        return new KvqException(ErrorCode.UNSUPPORTED, message);
    }

    /** Throws {@link ErrorCode#ILLEGAL_ARGUMENT} unless {@code condition} holds. */
    public static void require(boolean condition, String message) {
        if (!condition) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, message);
        }
    }
}
