package dev.kvq.cli;

import dev.kvq.KvqException;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Memory sizes as users write them: {@code 8GiB}, {@code 512MiB}, {@code 2GB}, {@code 1048576}. */
final class Sizes {
    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([kmgt]?)(i?)b?");

    private Sizes() {
    }

    static long parse(String option, String text) {
        Matcher m = SIZE.matcher(text == null ? "" : text.trim().toLowerCase(Locale.ROOT));
        if (!m.matches()) {
            throw KvqException.config(option + " must be a size such as 8GiB, 512MiB or 2GB, was '" + text + "'");
        }
        double value = Double.parseDouble(m.group(1));
        // a bare number is bytes ("kmgt".indexOf("") would be 0, a factor of 1000)
        int power = m.group(2).isEmpty() ? 0 : "kmgt".indexOf(m.group(2)) + 1;
        double unit = Math.pow(m.group(3).isEmpty() && power > 0 ? 1000 : 1024, power);
        double bytes = value * unit;
        if (bytes < 1 || bytes > Long.MAX_VALUE / 2) {
            throw KvqException.config(option + " must be between 1 byte and 4 EiB, was '" + text + "'");
        }
        return (long) bytes;
    }
}
