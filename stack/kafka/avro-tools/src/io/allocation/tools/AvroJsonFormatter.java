package io.allocation.tools;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.apicurio.registry.serde.avro.AvroKafkaDeserializer;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.apache.avro.generic.GenericContainer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.MessageFormatter;
import org.apache.kafka.common.header.Header;

/**
 * ConsoleConsumer's --formatter for Avro values in the Confluent wire format: prints each value as
 * one line of JSON, decoded with the writer's schema fetched by id through Apicurio's serde.
 *
 * Properties (--property name=value), named as Kafka's DefaultMessageFormatter names them:
 * print.key, print.headers, print.partition, print.offset, print.timestamp (false by default),
 * key.separator (tab), headers.separator (","), headers.key.separator (":"), line.separator ("\n"),
 * null.literal ("null"); schema.registry.url and apicurio.* for the registry.
 * A value that cannot be decoded is reported on stderr with its partition and offset, and skipped.
 */
public final class AvroJsonFormatter implements MessageFormatter {
    private final ObjectMapper json = new ObjectMapper();
    private final AvroKafkaDeserializer<Object> deserializer = new AvroKafkaDeserializer<>();
    private Map<String, ?> props = Map.of();

    @Override
    public void configure(Map<String, ?> configs) {
        props = configs;
        deserializer.configure(Registry.serdeConfig(configs), false);
    }

    @Override
    public void writeTo(ConsumerRecord<byte[], byte[]> record, PrintStream output) {
        String value;
        try {
            value = formatValue(record);
        } catch (RuntimeException | JsonProcessingException e) {
            System.err.printf("partition %d offset %d: cannot decode the value: %s%n",
                    record.partition(), record.offset(), firstLine(e));
            return;
        }
        String separator = option("key.separator", "\t");
        StringBuilder line = new StringBuilder();
        if (flag("print.timestamp")) {
            line.append(record.timestampType()).append(':').append(record.timestamp()).append(separator);
        }
        if (flag("print.partition")) {
            line.append("Partition:").append(record.partition()).append(separator);
        }
        if (flag("print.offset")) {
            line.append("Offset:").append(record.offset()).append(separator);
        }
        if (flag("print.headers")) {
            line.append(formatHeaders(record)).append(separator);
        }
        if (flag("print.key")) {
            line.append(text(record.key())).append(separator);
        }
        output.print(line.append(value).append(option("line.separator", "\n")));
    }

    @Override
    public void close() {
        deserializer.close();
    }

    private String formatValue(ConsumerRecord<byte[], byte[]> record) throws JsonProcessingException {
        if (record.value() == null) {
            return option("null.literal", "null");
        }
        if (record.value().length < 5 || record.value()[0] != 0) {
            throw new IllegalArgumentException("not Avro in the Confluent wire format (magic byte 0, 4-byte schema id)");
        }
        Object datum = deserializer.deserialize(record.topic(), record.headers(), record.value());
        if (!(datum instanceof GenericContainer)) {
            return json.writeValueAsString(datum == null ? null : datum.toString());
        }
        return json.writeValueAsString(AvroJson.toJson(datum, ((GenericContainer) datum).getSchema()));
    }

    private String formatHeaders(ConsumerRecord<byte[], byte[]> record) {
        StringBuilder out = new StringBuilder();
        for (Header header : record.headers()) {
            if (out.length() > 0) {
                out.append(option("headers.separator", ","));
            }
            out.append(header.key()).append(option("headers.key.separator", ":")).append(text(header.value()));
        }
        return out.length() == 0 ? "NO_HEADERS" : out.toString();
    }

    private String text(byte[] bytes) {
        return bytes == null ? option("null.literal", "null") : new String(bytes, StandardCharsets.UTF_8);
    }

    private boolean flag(String name) {
        return Boolean.parseBoolean(option(name, "false"));
    }

    private String option(String name, String fallback) {
        Object value = props.get(name);
        return value == null ? fallback : value.toString();
    }

    static String firstLine(Throwable error) {
        Throwable root = error;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        String message = root.getMessage() == null ? root.getClass().getSimpleName() : root.getMessage();
        return message.lines().findFirst().orElse(message);
    }
}
