package dev.kvq.serve;

/**
 * A request the server refuses or could not serve, answered as OpenAI does: the status, and a JSON body
 * {@code {"error": {"message", "type", "param", "code"}}} whose message names the field or limit at fault.
 */
final class ApiError extends RuntimeException {
    private final int status;
    private final String type;
    private final String param;

    ApiError(int status, String type, String param, String message) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.param = param;
    }

    /** 400: a field is missing, of the wrong type, out of range, or the request can never fit the server's limits. */
    static ApiError invalid(String param, String message) {
        return new ApiError(400, "invalid_request_error", param, message);
    }

    int status() {
        return status;
    }

    String type() {
        return type;
    }

    String param() {
        return param;
    }
}
