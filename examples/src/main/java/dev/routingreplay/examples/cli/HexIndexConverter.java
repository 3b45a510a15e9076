package dev.routingreplay.examples.cli;

import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * Converts a request-queue index written in hex (as in {@code manifest.tsv} and the server's listing): 1 to 16 hex
 * digits, not negative. Anything else is a {@link TypeConversionException}, which picocli reports naming the option.
 */
public final class HexIndexConverter implements ITypeConverter<Long> {
    /** The index {@code value} names; never negative. */
    @Override
    public Long convert(String value) {
        if (value.matches("[0-9a-fA-F]{1,16}")) {
            try {
                return Long.parseLong(value, 16);
            } catch (NumberFormatException e) {
                // 16 digits past the largest signed long: reported below
            }
        }
        throw new TypeConversionException("'" + value + "' is not a record index (1 to 16 hex digits, as in manifest.tsv)");
    }
}
