package dev.kvq;

/** What went wrong, in a form a caller can switch on; the exception message says the details and the fix. */
public enum ErrorCode {
    /** A configuration value is malformed or contradicts another one. */
    INVALID_CONFIG,
    /** The configuration is well formed but the chosen backend, runtime or model cannot run it. */
    UNSUPPORTED,
    /** No backend or runtime with the requested name was discovered. */
    UNKNOWN_PROVIDER,
    /** Two providers claim the same name. */
    DUPLICATE_PROVIDER,
    /** A provider failed while it was being loaded or initialised. */
    PROVIDER_FAILED,
    /** K/V data handed to the cache contains NaN or infinity. */
    NON_FINITE_INPUT,
    /** A model directory or model file is missing, unreadable or does not follow the expected contract. */
    MODEL_INVALID,
    /** Text cannot be tokenized with the model's tokenizer. */
    TOKENIZER,
    /** A file is corrupt or truncated. */
    CORRUPT_DATA,
    /** Reading or writing a file failed. */
    IO,
    /** The inference runtime failed while running the model. */
    RUNTIME_FAILURE,
    /** An object was used after it was closed. */
    CLOSED,
    /** An argument violates a method's contract. */
    ILLEGAL_ARGUMENT
}
