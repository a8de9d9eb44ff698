package dev.kvq.cli;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.model.ModelDir;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.regex.Pattern;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * The checks of the commands' options, in one place. Ranges are checked where picocli parses a value (the converters
 * below; picocli puts the option's name in front of their message); input files, combinations of options and what a
 * loaded model can hold are checked by the static methods, which commands call from {@link CheckedCommand#check()}
 * before any work. Every failure names the option, file or value and says what is allowed; the command exits with
 * code 2.
 */
final class Checks {
    private Checks() {
    }

    // ---- values, at parse time ----

    static int parseInt(String value) {
        try {
            return Integer.parseInt(value.trim());
        } catch (NumberFormatException e) {
            throw new TypeConversionException("'" + value + "' is not a whole number (up to " + Integer.MAX_VALUE + ")");
        }
    }

    static double parseDouble(String value) {
        try {
            double d = Double.parseDouble(value.trim());
            if (Double.isFinite(d)) {
                return d;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw new TypeConversionException("'" + value + "' is not a number");
    }

    static int atLeast(String value, int min) {
        int v = parseInt(value);
        if (v < min) {
            throw new TypeConversionException("was " + v + ", must be " + (min == 0 ? "0 or more" : "at least " + min));
        }
        return v;
    }

    /** 1 or more: counts of windows, trials, threads, steps, repeats, batch sizes, tokens, layers. */
    static final class Positive implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String value) {
            return atLeast(value, 1);
        }
    }

    /** 0 or more: offsets, lengths and limits where 0 means "all", seeds of counts. */
    static final class NotNegative implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String value) {
            return atLeast(value, 0);
        }
    }

    /** A window of tokens: at least 2 (one prompt token and one scored). */
    static final class Window implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String value) {
            return atLeast(value, 2);
        }
    }

    /** Key or value bits: 1 to 8. */
    static final class Bits implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String value) {
            int v = parseInt(value);
            if (v < 1 || v > 8) {
                throw new TypeConversionException("was " + v + ", must be between 1 and 8 bits");
            }
            return v;
        }
    }

    /** A quantization axis: 0 per token, 1 per channel, -1 per channel in optimum-quanto's spelling. */
    static final class Axis implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String value) {
            int v = parseInt(value);
            if (v < -1 || v > 1) {
                throw new TypeConversionException("was " + v + ", must be 0 (per token), 1 (per channel) or -1 "
                        + "(per channel, quanto's spelling)");
            }
            return v;
        }
    }

    /** A group size: -1 (one group per head_dim row) or a positive number. */
    static final class GroupSize implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String value) {
            int v = parseInt(value);
            if (v == 0 || v < -1) {
                throw new TypeConversionException("was " + v + ", must be -1 (one group per head_dim row) or a positive "
                        + "number");
            }
            return v;
        }
    }

    /** A sampling temperature: 0 (greedy) or positive. */
    static final class Temperature implements ITypeConverter<Double> {
        @Override
        public Double convert(String value) {
            double v = parseDouble(value);
            if (v < 0) {
                throw new TypeConversionException("was " + value + ", must be 0 (greedy) or positive");
            }
            return v;
        }
    }

    /** Nucleus sampling's probability mass: more than 0, at most 1 (1 = off). */
    static final class TopP implements ITypeConverter<Double> {
        @Override
        public Double convert(String value) {
            double v = parseDouble(value);
            if (v <= 0 || v > 1) {
                throw new TypeConversionException("was " + value + ", must be more than 0 and at most 1 (1 = off)");
            }
            return v;
        }
    }

    /** Average bits of a budget: 1 to 8 (the profile's search space narrows it further). */
    static final class AverageBits implements ITypeConverter<Double> {
        @Override
        public Double convert(String value) {
            double v = parseDouble(value);
            if (v < 1 || v > 8) {
                throw new TypeConversionException("was " + value + ", must be an average of 1 to 8 bits");
            }
            return v;
        }
    }

    /** Text that must not be empty (stop strings, prompts). */
    static final class NotEmpty implements ITypeConverter<String> {
        @Override
        public String convert(String value) {
            if (value.isEmpty()) {
                throw new TypeConversionException("is empty; give at least one character");
            }
            return value;
        }
    }

    /** A device: cpu, cuda or cuda:N. */
    static final class Device implements ITypeConverter<String> {
        private static final Pattern DEVICE = Pattern.compile("cpu|cuda(:\\d+)?");

        @Override
        public String convert(String value) {
            if (!DEVICE.matcher(value).matches()) {
                throw new TypeConversionException("was '" + value + "', must be cpu, cuda or cuda:N");
            }
            return value;
        }
    }

    /** A runtime discovered on the module path: onnx, djl, or a third party's. */
    static final class Runtime implements ITypeConverter<String> {
        @Override
        public String convert(String value) {
            try {
                Runtimes.discover().get(value);
            } catch (KvqException e) {
                throw new TypeConversionException(e.getMessage());
            }
            return value;
        }
    }

    /** A cache policy: kvtuner or append. */
    static final class Policy implements ITypeConverter<String> {
        @Override
        public String convert(String value) {
            String v = value.trim().toLowerCase(Locale.ROOT);
            if (!v.equals("kvtuner") && !v.equals("append")) {
                throw new TypeConversionException("was '" + value + "', must be kvtuner or append");
            }
            return v;
        }
    }

    /**
     * KVTuner's two schemes, spelled {@code pertoken} and {@code kivi} by every command; KVTuner's own names
     * ({@code per-token-asym}, {@code per-channel-asym}) and {@code per-token}/{@code per-channel} are accepted too.
     */
    static final class Scheme implements ITypeConverter<String> {
        @Override
        public String convert(String value) {
            return switch (value.trim().toLowerCase(Locale.ROOT)) {
                case "pertoken", "per-token", "per-token-asym" -> "pertoken";
                case "kivi", "per-channel", "per-channel-asym" -> "kivi";
                default -> throw new TypeConversionException("was '" + value + "', must be pertoken or kivi (KVTuner's "
                        + "per-token-asym and per-channel-asym)");
            };
        }
    }

    /** A key-value bit pair of a sweep, {@code K-V} with 1 to 8 bits each. */
    static final class BitPair implements ITypeConverter<String> {
        @Override
        public String convert(String value) {
            String[] kv = value.split("-");
            if (kv.length != 2) {
                throw new TypeConversionException("was '" + value + "', entries look like 8-4 (key bits - value bits)");
            }
            for (String b : kv) {
                int bits;
                try {
                    bits = Integer.parseInt(b.trim());
                } catch (NumberFormatException e) {
                    throw new TypeConversionException("was '" + value + "', entries look like 8-4 (key bits - value bits)");
                }
                if (bits < 1 || bits > 8) {
                    throw new TypeConversionException("was '" + value + "', bits must be between 1 and 8");
                }
            }
            return value.trim();
        }
    }

    /** Characters outside a character vocabulary: error, replace, or replace:C with one character C. */
    static final class UnknownChars implements ITypeConverter<String> {
        @Override
        public String convert(String value) {
            if (value.equals("error") || value.equals("replace")
                    || value.startsWith("replace:") && value.codePointCount(8, value.length()) == 1) {
                return value;
            }
            throw new TypeConversionException("was '" + value + "', must be error, replace (with a space) or replace:C "
                    + "(with the one character C)");
        }
    }

    // ---- files, before any work ----

    /** {@code file} is an existing, readable regular file. */
    static Path inputFile(String option, Path file) {
        if (!Files.exists(file)) {
            throw new KvqException(ErrorCode.IO, option + " " + file + " does not exist");
        }
        if (Files.isDirectory(file)) {
            throw new KvqException(ErrorCode.IO, option + " " + file + " is a directory; give a file");
        }
        if (!Files.isReadable(file)) {
            throw new KvqException(ErrorCode.IO, option + " " + file + " cannot be read (permission denied)");
        }
        return file;
    }

    /** {@code dir} is an existing directory. */
    static Path inputDirectory(String option, Path dir) {
        if (!Files.isDirectory(dir)) {
            throw new KvqException(ErrorCode.IO, option + " " + dir + (Files.exists(dir) ? " is a file; give a directory"
                    : " does not exist"));
        }
        return dir;
    }

    /** The UTF-8 text of an input file. */
    static String readText(String option, Path file) {
        inputFile(option, file);
        try {
            return Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            KvqException k = KvqException.cannotRead(file, e);
            throw new KvqException(k.code(), option + " " + k.getMessage(), e);
        }
    }

    // ---- combinations of options ----

    /** Fails unless {@code condition}, with {@code message} (which names the options and the fix). */
    static void require(boolean condition, String message) {
        if (!condition) {
            throw KvqException.config(message);
        }
    }

    /** {@code value} of {@code option} lies in [{@code min}, {@code max}]. */
    static void range(String option, int value, int min, int max, String why) {
        require(value >= min && value <= max, option + " was " + value + ", must be between " + min + " and " + max
                + " " + why);
    }

    // ---- what the model can hold ----

    /**
     * A request that needs {@code positions} token positions fits the model's {@code max_position_embeddings} (models
     * whose config.json does not give it are not checked).
     *
     * @param request what needs them, with the option, e.g. "--window 5000"
     * @param fix what to change, e.g. "give a --window of at most 1024"
     */
    static void fits(ModelDir dir, long positions, String request, String fix) {
        int max = dir.config().maxPositions();
        if (max > 0 && positions > max) {
            throw KvqException.config(request + " needs " + String.format("%,d", positions) + " token positions, but "
                    + dir.name() + " has " + String.format("%,d", max) + " (max_position_embeddings in its config.json); "
                    + fix);
        }
    }

    /** "1 token", "5 tokens". */
    static String tokens(long n) {
        return String.format("%,d", n) + (n == 1 ? " token" : " tokens");
    }

    /** The model's positions, or {@code Integer.MAX_VALUE} when config.json does not give them. */
    static int positions(ModelDir dir) {
        int max = dir.config().maxPositions();
        return max > 0 ? max : Integer.MAX_VALUE;
    }
}
