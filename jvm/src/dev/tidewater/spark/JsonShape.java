package dev.tidewater.spark;

import java.io.IOException;
import java.util.HashMap;
import java.util.Map;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import org.apache.spark.sql.api.java.UDF2;
import org.apache.spark.sql.catalyst.expressions.json.SharedFactory;

/**
 * The shape of a JSON line against the fields a source declares, in one pass over its top-level keys:
 * bit i set when the object has fields[i], bit {@value #EXTRA_BIT} set when it has a key that is not a
 * field; null when the text is not a JSON object.
 *
 * It reads keys as Spark's json_object_keys does (the same parser settings, values skipped), but on the
 * text's characters: Spark's own function builds a byte stream decoder per line, which cost more than
 * the key scan itself on silver's hottest path.
 */
public final class JsonShape implements UDF2<String, String, Long> {
    public static final int EXTRA_BIT = 62;
    private static final ThreadLocal<Map<String, Map<String, Integer>>> INDEXES = ThreadLocal.withInitial(HashMap::new);

    @Override
    public Long call(String json, String fields) {
        if (json == null) {
            return null;
        }
        Map<String, Integer> index = INDEXES.get().computeIfAbsent(fields, JsonShape::index);
        try (JsonParser parser = SharedFactory.jsonFactory().createParser(json)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            long shape = 0;
            while (parser.nextValue() != null && parser.currentName() != null) {
                Integer i = index.get(parser.currentName());
                shape |= 1L << (i == null ? EXTRA_BIT : i);
                parser.skipChildren();
            }
            return shape;
        } catch (IOException err) {
            return null;
        }
    }

    /** Field name -> bit, from the comma-separated list the query passes (at most 62 names). */
    static Map<String, Integer> index(String fields) {
        String[] names = fields.split(",", -1);
        if (names.length > EXTRA_BIT) {
            throw new IllegalArgumentException("a JSON shape covers at most " + EXTRA_BIT + " fields, not " + names.length);
        }
        Map<String, Integer> index = new HashMap<>();
        for (int i = 0; i < names.length; i++) {
            index.putIfAbsent(names[i], i);
        }
        return index;
    }
}
