package io.allocation.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Where the schema registry is, and the serde settings both tools share.
 *
 * Users name the registry as Confluent's tools do (schema.registry.url, the Confluent-compatible
 * API that SCHEMA_REGISTRY_URL points at). Apicurio's serde talks to the registry's own v3 API on
 * the same server, so that URL is derived from it unless apicurio.registry.url is given.
 */
final class Registry {
    static final String CCOMPAT_URL = "schema.registry.url";
    static final String DEFAULT_CCOMPAT_URL = "http://127.0.0.1:8081/apis/ccompat/v7";

    /**
     * Apicurio's client logs through java.util.logging at INFO and WARNING (a shared Vert.x
     * instance, each schema lookup): noise on a console tool's stderr, where only errors belong.
     * Held here because the logging framework keeps loggers weakly.
     */
    private static final Logger APICURIO_LOG = Logger.getLogger("io.apicurio");

    static {
        APICURIO_LOG.setLevel(Level.SEVERE);
    }

    private Registry() {}

    static String ccompatUrl(Map<String, ?> props) {
        Object url = props.get(CCOMPAT_URL);
        return stripSlash(url == null ? DEFAULT_CCOMPAT_URL : url.toString());
    }

    static String coreUrl(Map<String, ?> props) {
        Object explicit = props.get("apicurio.registry.url");
        if (explicit != null) {
            return explicit.toString();
        }
        String ccompat = ccompatUrl(props);
        int at = ccompat.indexOf("/apis/ccompat/");
        if (at < 0) {
            throw new IllegalArgumentException(CCOMPAT_URL + "=" + ccompat
                    + " is not an Apicurio Confluent-compatible URL (.../apis/ccompat/v7):"
                    + " also give --property apicurio.registry.url=<.../apis/registry/v3>");
        }
        return ccompat.substring(0, at) + "/apis/registry/v3";
    }

    /**
     * Serde settings for the Confluent wire format: magic byte 0, a 4-byte id in the payload (no
     * Apicurio headers), and that id is the content id, which is what the Confluent-compatible API
     * calls a schema id. Passed-through apicurio.* properties override these.
     */
    static Map<String, Object> serdeConfig(Map<String, ?> props) {
        Map<String, Object> config = new HashMap<>();
        config.put("apicurio.registry.url", coreUrl(props));
        config.put("apicurio.registry.headers.enabled", "false");
        config.put("apicurio.registry.id-handler", "io.apicurio.registry.serde.Default4ByteIdHandler");
        config.put("apicurio.registry.use-id", "contentId");
        config.put("apicurio.registry.auto-register", "false");
        for (Map.Entry<String, ?> entry : props.entrySet()) {
            if (entry.getKey().startsWith("apicurio.")) {
                config.put(entry.getKey(), entry.getValue());
            }
        }
        return config;
    }

    /** The version of subject that holds schema id, from the Confluent-compatible API. */
    static String versionOf(Map<String, ?> props, int schemaId, String subject) throws IOException {
        JsonNode entries = get(props, "/schemas/ids/" + schemaId + "/versions", "schema id " + schemaId + " is not registered");
        List<String> others = new ArrayList<>();
        for (JsonNode entry : entries) {
            if (subject.equals(entry.path("subject").asText())) {
                return entry.path("version").asText();
            }
            others.add(entry.path("subject").asText());
        }
        String where = others.size() <= 3 ? String.join(", ", others)
                : String.join(", ", others.subList(0, 3)) + " and " + (others.size() - 3) + " more";
        throw new IOException("schema id " + schemaId + " is not a version of subject " + subject
                + " (it is registered under " + where + ")");
    }

    /** The latest version of subject. */
    static String latestVersion(Map<String, ?> props, String subject) throws IOException {
        String path = "/subjects/" + URLEncoder.encode(subject, StandardCharsets.UTF_8) + "/versions/latest";
        return get(props, path, "subject " + subject + " has no schema in the registry").path("version").asText();
    }

    private static JsonNode get(Map<String, ?> props, String path, String notFound) throws IOException {
        String url = ccompatUrl(props) + path;
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        HttpRequest request = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).GET().build();
        HttpResponse<String> response;
        try {
            response = http.send(request, HttpResponse.BodyHandlers.ofString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        } catch (IOException e) {
            throw new IOException("the schema registry does not answer at " + ccompatUrl(props), e);
        }
        if (response.statusCode() == 404) {
            throw new IOException(notFound + " (" + ccompatUrl(props) + ")");
        }
        if (response.statusCode() != 200) {
            throw new IOException("the schema registry answered " + response.statusCode() + " to GET " + url);
        }
        return new ObjectMapper().readTree(response.body());
    }

    private static String stripSlash(String url) {
        return url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
    }
}
