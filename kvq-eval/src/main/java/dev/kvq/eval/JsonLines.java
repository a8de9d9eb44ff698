package dev.kvq.eval;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.nio.file.Path;

/** One line of a JSON Lines data file, parsed with an error that names the file and the line. */
final class JsonLines {
    private static final ObjectMapper JSON = new ObjectMapper();

    private JsonLines() {
    }

    /** Line {@code number} (1-based) of {@code file} as a JSON object. */
    static JsonNode object(Path file, int number, String line) {
        JsonNode n;
        try {
            n = JSON.readTree(line);
        } catch (JsonProcessingException e) {
            throw new KvqException(ErrorCode.CORRUPT_DATA, file + " line " + number + " is not valid JSON: "
                    + e.getOriginalMessage() + " (column " + (e.getLocation() == null ? "?" : e.getLocation().getColumnNr())
                    + "); the file must hold one JSON object per line", e);
        }
        if (n == null || !n.isObject()) {
            throw new KvqException(ErrorCode.CORRUPT_DATA, file + " line " + number + " is not a JSON object; the file "
                    + "must hold one JSON object per line");
        }
        return n;
    }
}
