package dev.tidewater.spark;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import javax.security.sasl.AuthenticationException;

import org.apache.hive.service.auth.PasswdAuthenticationProvider;
import org.apache.spark.SparkEnv;

/**
 * The SQL server's CUSTOM authentication: a user connects with its name and its token as password.
 *
 * Tokens are the platform's caller tokens (`name=token,...` in the environment variable that the
 * setting spark.tidewater.access.tokensEnv names), so BI users have the same identities as API callers.
 */
public final class TokenAuthenticator implements PasswdAuthenticationProvider {
    @Override
    public void Authenticate(String user, String password) throws AuthenticationException {
        String env = SparkEnv.get().conf().get("spark.tidewater.access.tokensEnv", "TIDEWATER_API_TOKENS");
        String tokens = System.getenv(env);
        if (tokens != null && user != null && password != null) {
            for (String entry : tokens.split("[,\n]")) {
                int eq = entry.indexOf('=');
                if (eq > 0 && entry.substring(0, eq).trim().equals(user)
                        && MessageDigest.isEqual(entry.substring(eq + 1).trim().getBytes(StandardCharsets.UTF_8),
                                                 password.getBytes(StandardCharsets.UTF_8))) {
                    return;
                }
            }
        }
        throw new AuthenticationException("unknown user or token: " + user);
    }
}
