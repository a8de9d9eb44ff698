package dev.kvq;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The one exception kvq throws. Unchecked; carries an {@link ErrorCode} and a message that names the
 * offending field or file, the value found, and what is allowed.
 */
public class KvqException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private static final Pattern PARSER_LOCATION = Pattern.compile("line: (\\d+), column: (\\d+)");
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

    /**
     * The failure to read {@code file}, in plain words: it does not exist, cannot be read, is a directory, is not UTF-8
     * text, or is not valid JSON (a parser's message reduced to its first line, with the line and column).
     */
    public static KvqException cannotRead(Path file, IOException e) {
        if (e instanceof NoSuchFileException) {
            return new KvqException(ErrorCode.IO, file + " does not exist", e);
        }
        if (e instanceof AccessDeniedException) {
            return new KvqException(ErrorCode.IO, file + " cannot be read (permission denied)", e);
        }
        if (e instanceof CharacterCodingException) {
            return new KvqException(ErrorCode.CORRUPT_DATA, file + " is not UTF-8 text (is it a binary file?)", e);
        }
        if (Files.isDirectory(file)) {
            return new KvqException(ErrorCode.IO, file + " is a directory, not a file", e);
        }
        String message = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        Matcher at = PARSER_LOCATION.matcher(message);
        if (at.find()) {
            String what = message.lines().findFirst().orElse(message).trim();
            String where = " (line " + at.group(1) + ", column " + at.group(2) + ")";
            return new KvqException(ErrorCode.CORRUPT_DATA, what.startsWith("Unexpected end-of-input")
                    ? file + " ends too early, it is truncated: " + what + where
                    : file + " is not valid JSON: " + what + where, e);
        }
        return new KvqException(ErrorCode.IO, "cannot read " + file + ": " + message, e);
    }

    /** Throws {@link ErrorCode#ILLEGAL_ARGUMENT} unless {@code condition} holds. */
    public static void require(boolean condition, String message) {
        if (!condition) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, message);
        }
    }
}
