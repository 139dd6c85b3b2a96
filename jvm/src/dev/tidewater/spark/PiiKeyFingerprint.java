package dev.tidewater.spark;

import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

import org.apache.spark.sql.api.java.UDF1;

/** A short, one-way fingerprint of the key this JVM hashes with (null when it has none), to compare keys. */
public final class PiiKeyFingerprint implements UDF1<String, String> {
    public static final String LABEL = "tidewater pii key fingerprint";

    @Override
    public String call(String keyEnv) {
        String key = System.getenv(keyEnv);
        if (key == null || key.isEmpty()) {
            return null;
        }
        byte[] digest = PiiToken.mac(keyEnv).doFinal(LABEL.getBytes(StandardCharsets.UTF_8));
        return HexFormat.of().formatHex(digest).substring(0, 16);
    }
}
