package io.allocation.tools;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.format.DateTimeParseException;
import java.time.temporal.ChronoUnit;
import java.time.temporal.TemporalAccessor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.avro.LogicalType;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.IndexedRecord;

/**
 * Plain JSON to and from Avro data, the way a person reads and types it: a union is written as its
 * value (not Avro's {"type": value} wrapper, though that is accepted on input), dates and
 * timestamps as ISO-8601 strings (a number is accepted on input too), bytes as ISO-8859-1 text.
 */
final class AvroJson {
    private AvroJson() {}

    /** The input does not fit the schema; the message names the field. */
    static final class Mismatch extends Exception {
        Mismatch(String path, String message) {
            super((path.isEmpty() ? "" : "field \"" + path + "\": ") + message);
        }
    }

    /** Avro data (as a deserializer returns it) to plain Java values that Jackson writes as JSON. */
    static Object toJson(Object datum, Schema schema) {
        if (datum == null) {
            return null;
        }
        if (datum instanceof TemporalAccessor) {
            return datum.toString();
        }
        switch (schema.getType()) {
            case RECORD: {
                IndexedRecord record = (IndexedRecord) datum;
                Map<String, Object> out = new LinkedHashMap<>();
                for (Schema.Field field : schema.getFields()) {
                    out.put(field.name(), toJson(record.get(field.pos()), field.schema()));
                }
                return out;
            }
            case UNION:
                return toJson(datum, schema.getTypes().get(GenericData.get().resolveUnion(schema, datum)));
            case ARRAY: {
                List<Object> out = new ArrayList<>();
                for (Object item : (Collection<?>) datum) {
                    out.add(toJson(item, schema.getElementType()));
                }
                return out;
            }
            case MAP: {
                Map<String, Object> out = new LinkedHashMap<>();
                for (Map.Entry<?, ?> entry : ((Map<?, ?>) datum).entrySet()) {
                    out.put(entry.getKey().toString(), toJson(entry.getValue(), schema.getValueType()));
                }
                return out;
            }
            case INT:
                return logicalName(schema).equals("date") ? LocalDate.ofEpochDay((Integer) datum).toString()
                        : logicalName(schema).equals("time-millis")
                                ? LocalTime.ofNanoOfDay((Integer) datum * 1_000_000L).toString() : datum;
            case LONG:
                switch (logicalName(schema)) {
                    case "timestamp-millis":
                        return Instant.ofEpochMilli((Long) datum).toString();
                    case "timestamp-micros":
                        return Instant.EPOCH.plus((Long) datum, ChronoUnit.MICROS).toString();
                    default:
                        return datum;
                }
            case BYTES: {
                ByteBuffer buffer = ((ByteBuffer) datum).duplicate();
                byte[] bytes = new byte[buffer.remaining()];
                buffer.get(bytes);
                return new String(bytes, StandardCharsets.ISO_8859_1);
            }
            case FIXED:
                return new String(((GenericFixed) datum).bytes(), StandardCharsets.ISO_8859_1);
            case STRING:
            case ENUM:
                return datum.toString();
            default:
                return datum;
        }
    }

    /** A JSON value to Avro data of the schema, or a Mismatch naming the first field that does not fit. */
    static Object fromJson(JsonNode node, Schema schema, String path) throws Mismatch {
        boolean absent = node == null || node.isNull() || node.isMissingNode();
        switch (schema.getType()) {
            case NULL:
                if (absent) {
                    return null;
                }
                throw new Mismatch(path, "expected null, got " + node);
            case UNION:
                return fromUnion(node, schema, path);
            default:
                if (absent) {
                    throw new Mismatch(path, "expected " + describe(schema) + ", got null");
                }
                return fromValue(node, schema, path);
        }
    }

    private static Object fromValue(JsonNode node, Schema schema, String path) throws Mismatch {
        String logical = logicalName(schema);
        switch (schema.getType()) {
            case RECORD:
                return fromRecord(node, schema, path);
            case BOOLEAN:
                if (node.isBoolean()) {
                    return node.booleanValue();
                }
                break;
            case INT:
                if (logical.equals("date") && node.isTextual()) {
                    try {
                        return Math.toIntExact(LocalDate.parse(node.textValue()).toEpochDay());
                    } catch (DateTimeParseException e) {
                        throw new Mismatch(path, "expected a date YYYY-MM-DD, got " + node);
                    }
                }
                if (node.isIntegralNumber() && node.canConvertToInt()) {
                    return node.intValue();
                }
                break;
            case LONG:
                if (logical.startsWith("timestamp-") && node.isTextual()) {
                    try {
                        Instant instant = Instant.parse(node.textValue());
                        return logical.equals("timestamp-micros")
                                ? ChronoUnit.MICROS.between(Instant.EPOCH, instant) : instant.toEpochMilli();
                    } catch (DateTimeParseException e) {
                        throw new Mismatch(path, "expected an ISO-8601 instant, got " + node);
                    }
                }
                if (node.isIntegralNumber() && node.canConvertToLong()) {
                    return node.longValue();
                }
                break;
            case FLOAT:
                if (node.isNumber()) {
                    return node.floatValue();
                }
                break;
            case DOUBLE:
                if (node.isNumber()) {
                    return node.doubleValue();
                }
                break;
            case STRING:
                if (node.isTextual()) {
                    return node.textValue();
                }
                break;
            case BYTES:
                if (node.isTextual()) {
                    return ByteBuffer.wrap(node.textValue().getBytes(StandardCharsets.ISO_8859_1));
                }
                break;
            case FIXED:
                if (node.isTextual() && node.textValue().length() == schema.getFixedSize()) {
                    return new GenericData.Fixed(schema, node.textValue().getBytes(StandardCharsets.ISO_8859_1));
                }
                break;
            case ENUM:
                if (node.isTextual() && schema.hasEnumSymbol(node.textValue())) {
                    return new GenericData.EnumSymbol(schema, node.textValue());
                }
                break;
            case ARRAY:
                if (node.isArray()) {
                    List<Object> items = new GenericData.Array<>(node.size(), schema);
                    for (int i = 0; i < node.size(); i++) {
                        items.add(fromJson(node.get(i), schema.getElementType(), path + "[" + i + "]"));
                    }
                    return items;
                }
                break;
            case MAP:
                if (node.isObject()) {
                    Map<String, Object> map = new LinkedHashMap<>();
                    for (Map.Entry<String, JsonNode> entry : node.properties()) {
                        map.put(entry.getKey(), fromJson(entry.getValue(), schema.getValueType(), path + "." + entry.getKey()));
                    }
                    return map;
                }
                break;
            default:
                break;
        }
        throw new Mismatch(path, "expected " + describe(schema) + ", got " + node);
    }

    private static Object fromRecord(JsonNode node, Schema schema, String path) throws Mismatch {
        if (!node.isObject()) {
            throw new Mismatch(path, "expected a JSON object (record " + schema.getName() + "), got " + node);
        }
        for (Iterator<String> names = node.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            if (schema.getField(name) == null) {
                throw new Mismatch(join(path, name), "not a field of " + schema.getName()
                        + " (fields: " + fieldNames(schema) + ")");
            }
        }
        GenericData.Record record = new GenericData.Record(schema);
        for (Schema.Field field : schema.getFields()) {
            JsonNode value = node.get(field.name());
            if (value == null && field.hasDefaultValue()) {
                record.put(field.pos(), GenericData.get().getDefaultValue(field));
            } else if (value == null) {
                throw new Mismatch(join(path, field.name()), "missing (required by " + schema.getName() + ")");
            } else {
                record.put(field.pos(), fromJson(value, field.schema(), join(path, field.name())));
            }
        }
        return record;
    }

    private static Object fromUnion(JsonNode node, Schema schema, String path) throws Mismatch {
        boolean absent = node == null || node.isNull() || node.isMissingNode();
        if (absent) {
            for (Schema branch : schema.getTypes()) {
                if (branch.getType() == Schema.Type.NULL) {
                    return null;
                }
            }
        }
        // Avro's own JSON encoding wraps a union's value: {"int": 3}, {"io.x.Rec": {...}}
        if (!absent && node.isObject() && node.size() == 1) {
            String name = node.fieldNames().next();
            for (Schema branch : schema.getTypes()) {
                if (name.equals(branch.getFullName()) || name.equals(branch.getType().getName())) {
                    return fromJson(node.get(name), branch, path);
                }
            }
        }
        for (Schema branch : schema.getTypes()) {
            try {
                return fromJson(node, branch, path);
            } catch (Mismatch ignored) {
                // try the next branch
            }
        }
        throw new Mismatch(path, "expected " + describe(schema) + ", got " + (absent ? "null" : node));
    }

    private static String describe(Schema schema) {
        switch (schema.getType()) {
            case UNION: {
                List<String> names = new ArrayList<>();
                for (Schema branch : schema.getTypes()) {
                    names.add(describe(branch));
                }
                return String.join(" or ", names);
            }
            case RECORD:
                return "a record " + schema.getName();
            case INT:
                return logicalName(schema).equals("date") ? "a date YYYY-MM-DD" : "an int";
            case ENUM:
                return "one of " + schema.getEnumSymbols();
            default:
                return logicalName(schema).isEmpty() ? schema.getType().getName() : logicalName(schema);
        }
    }

    private static String logicalName(Schema schema) {
        LogicalType logical = schema.getLogicalType();
        return logical == null ? "" : logical.getName();
    }

    private static String join(String path, String name) {
        return path.isEmpty() ? name : path + "." + name;
    }

    private static String fieldNames(Schema schema) {
        List<String> names = new ArrayList<>();
        for (Schema.Field field : schema.getFields()) {
            names.add(field.name());
        }
        return String.join(", ", names);
    }
}
