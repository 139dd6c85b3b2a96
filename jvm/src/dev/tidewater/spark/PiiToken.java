package dev.tidewater.spark;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.apache.spark.sql.api.java.UDF2;

/**
 * HMAC-SHA256 of a PII value, keyed by the environment variable the query names.
 *
 * The query carries only the variable's name: the key is read from each JVM's own environment, so it
 * never appears in a query plan, the Spark UI, an event log or a command line.
 */
public final class PiiToken implements UDF2<String, String, String> {
    private static final ThreadLocal<Map<String, Mac>> MACS = ThreadLocal.withInitial(HashMap::new);

    @Override
    public String call(String value, String keyEnv) {
        if (value == null) {
            return null;
        }
        Mac mac = MACS.get().computeIfAbsent(keyEnv, PiiToken::mac);
        return HexFormat.of().formatHex(mac.doFinal(value.getBytes(StandardCharsets.UTF_8)));
    }

    static Mac mac(String keyEnv) {
        String key = System.getenv(keyEnv);
        if (key == null || key.isEmpty()) {
            throw new IllegalStateException(keyEnv + " is not set in this Spark JVM: PII cannot be hashed here");
        }
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            return mac;
        } catch (GeneralSecurityException err) {
            throw new IllegalStateException("HmacSHA256 is not available in this JVM", err);
        }
    }
}
