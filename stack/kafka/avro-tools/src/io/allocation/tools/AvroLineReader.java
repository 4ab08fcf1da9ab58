package io.allocation.tools;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.apicurio.registry.resolver.SchemaLookupResult;
import io.apicurio.registry.resolver.strategy.ArtifactReference;
import io.apicurio.registry.serde.avro.AvroKafkaSerializer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.UUID;
import org.apache.avro.Schema;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.utils.Exit;
import org.apache.kafka.tools.api.RecordReader;

/**
 * ConsoleProducer's --reader for Avro values: each input line is JSON (or key, separator, JSON
 * with parse.key=true), checked against one schema of subject {@code <topic>-value} and written in
 * the Confluent wire format by Apicurio's serde.
 *
 * Properties: parse.key (false), key.separator (tab), value.schema.id (default: the subject's
 * latest version), message.id ("random": a new UUID per record; "content": a UUID derived from
 * topic, key and value, so the same line sent again carries the same id), schema.registry.url and
 * apicurio.*. Every record gets a message_id header, the identity the allocation service's inbox
 * deduplicates by. A line that is not JSON or does not match the schema stops the tool with exit
 * code 1 and a message naming the line and the field; the lines before it are still sent.
 */
public final class AvroLineReader implements RecordReader {
    private final ObjectMapper json = new ObjectMapper();
    private final AvroKafkaSerializer<Object> serializer = new AvroKafkaSerializer<>();
    private String topic;
    private boolean parseKey;
    private String keySeparator;
    private boolean contentIds;
    private Schema schema;
    private String schemaLabel;

    @Override
    public void configure(Map<String, ?> configs) {
        topic = configs.get("topic").toString();
        parseKey = Boolean.parseBoolean(String.valueOf(configs.get("parse.key")));
        keySeparator = configs.containsKey("key.separator") ? configs.get("key.separator").toString() : "\t";
        String idMode = configs.containsKey("message.id") ? configs.get("message.id").toString() : "random";
        if (!idMode.equals("random") && !idMode.equals("content")) {
            fail("message.id must be random or content, not " + idMode);
        }
        contentIds = idMode.equals("content");
        String subject = topic + "-value";
        Map<String, Object> config = new HashMap<>(Registry.serdeConfig(configs));
        String version = null;
        try {
            if (configs.containsKey("value.schema.id")) {
                int id = Integer.parseInt(configs.get("value.schema.id").toString().trim());
                version = Registry.versionOf(configs, id, subject);
            } else {
                version = Registry.latestVersion(configs, subject);
            }
            // The serde writes the id of exactly this version; the record is built with its schema.
            config.put("apicurio.registry.artifact.version", version);
            serializer.configure(config, false);
            SchemaLookupResult<Schema> found = serializer.getSchemaResolver().resolveSchemaByArtifactReference(
                    ArtifactReference.builder().groupId("default").artifactId(subject).version(version).build());
            schema = found.getParsedSchema().getParsedSchema();
            schemaLabel = "subject " + subject + " version " + found.getVersion() + " (id " + found.getContentId() + ")";
        } catch (NumberFormatException e) {
            fail("value.schema.id must be a number, not " + configs.get("value.schema.id"));
        } catch (IOException e) {
            fail("no schema for topic " + topic + ": " + e.getMessage());
        } catch (RuntimeException e) {
            fail("no schema for topic " + topic + ": " + AvroJsonFormatter.firstLine(e));
        }
    }

    @Override
    public Iterator<ProducerRecord<byte[], byte[]>> readRecords(InputStream input) {
        BufferedReader lines = new BufferedReader(new InputStreamReader(input, StandardCharsets.UTF_8));
        return new Iterator<>() {
            private ProducerRecord<byte[], byte[]> next;
            private int lineNumber;

            @Override
            public boolean hasNext() {
                while (next == null) {
                    String line;
                    try {
                        line = lines.readLine();
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                    if (line == null) {
                        return false;
                    }
                    lineNumber++;
                    if (!line.isBlank()) {
                        next = toRecord(line, lineNumber);
                    }
                }
                return true;
            }

            @Override
            public ProducerRecord<byte[], byte[]> next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                ProducerRecord<byte[], byte[]> record = next;
                next = null;
                return record;
            }
        };
    }

    private ProducerRecord<byte[], byte[]> toRecord(String line, int lineNumber) {
        String key = null;
        String text = line;
        if (parseKey) {
            int at = line.indexOf(keySeparator);
            if (at < 0) {
                fail("line " + lineNumber + ": no key separator \"" + keySeparator + "\" (parse.key=true)");
            }
            key = line.substring(0, at);
            text = line.substring(at + keySeparator.length());
        }
        Object value;
        try {
            value = AvroJson.fromJson(json.readTree(text), schema, "");
        } catch (JsonProcessingException e) {
            fail("line " + lineNumber + ": not JSON: " + e.getOriginalMessage());
            return null;
        } catch (AvroJson.Mismatch e) {
            fail("line " + lineNumber + ": does not match " + schema.getName() + " of " + schemaLabel + ": " + e.getMessage());
            return null;
        }
        byte[] bytes;
        try {
            bytes = serializer.serialize(topic, value);
        } catch (RuntimeException e) {
            fail("line " + lineNumber + ": cannot serialize: " + AvroJsonFormatter.firstLine(e));
            return null;
        }
        byte[] keyBytes = key == null ? null : key.getBytes(StandardCharsets.UTF_8);
        RecordHeaders headers = new RecordHeaders();
        headers.add("message_id", messageId(key, text).getBytes(StandardCharsets.UTF_8));
        return new ProducerRecord<>(topic, null, keyBytes, bytes, headers);
    }

    private String messageId(String key, String value) {
        if (!contentIds) {
            return UUID.randomUUID().toString();
        }
        String identity = topic + "\u0000" + (key == null ? "" : key) + "\u0000" + value;
        return UUID.nameUUIDFromBytes(identity.getBytes(StandardCharsets.UTF_8)).toString();
    }

    @Override
    public void close() {
        serializer.close();
    }

    /** A message for a person, not a stack trace; the producer's shutdown hook sends what was read before. */
    private static void fail(String message) {
        System.err.println("kafka-avro-console-producer: error: " + message);
        System.err.flush();
        Exit.exit(1);
    }
}
