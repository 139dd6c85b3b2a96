package dev.tidewater.spark;

import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

import org.apache.hadoop.security.UserGroupInformation;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.View;

import scala.Option;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * A restricted user of the SQL server reads through the views of its role's database only.
 *
 * `spark.tidewater.access.restricted` maps users to that database (`analyst:analyst,...`); the platform
 * keeps its views masked (no PII tokens, no raw payloads). A restricted user's plan may not touch a
 * table, a file or a view anywhere else, nor run a statement other than a query, SHOW or USE. The user
 * is the session's (HiveServer2 runs each statement as it, hive.server2.enable.doAs).
 */
final class GrantsCheck extends AbstractFunction1<LogicalPlan, BoxedUnit> {
    private static final Set<String> LEAVES = Set.of("LocalRelation", "OneRowRelation", "Range", "CTERelationRef",
                                                     "ResolvedNamespace");
    private static final Set<String> COMMANDS = Set.of("ShowTables", "ShowNamespaces", "SetCatalogAndNamespace",
                                                       "SetCommand", "ShowTablesCommand");
    private final SparkSession session;

    GrantsCheck(SparkSession session) {
        this.session = session;
    }

    @Override
    public BoxedUnit apply(LogicalPlan plan) {
        String user = currentUser();
        String database = restricted().get(user);
        if (database != null) {
            String denial = denial(plan, database);
            if (denial != null) {
                throw new SecurityException(user + " (restricted) " + denial
                                            + "; read the views in database " + database);
            }
        }
        return BoxedUnit.UNIT;
    }

    private Map<String, String> restricted() {
        Map<String, String> users = new HashMap<>();
        for (String entry : session.conf().get("spark.tidewater.access.restricted", "").split(",")) {
            int colon = entry.indexOf(':');
            if (colon > 0) {
                users.put(entry.substring(0, colon).trim(), entry.substring(colon + 1).trim());
            }
        }
        return users;
    }

    private static String currentUser() {
        try {
            return UserGroupInformation.getCurrentUser().getShortUserName();
        } catch (IOException err) {
            throw new SecurityException("cannot tell who is asking: " + err.getMessage(), err);
        }
    }

    static String denial(LogicalPlan plan, String database) {
        if (plan instanceof View) {
            Option<String> db = ((View) plan).desc().identifier().database();
            if (db.isDefined() && db.get().equals(database)) {
                return null;
            }
        }
        String kind = plan.getClass().getSimpleName();
        if (plan instanceof Command && !COMMANDS.contains(kind)) {
            return "may run queries only (" + kind + ")";
        }
        if (plan.children().isEmpty() && !(plan instanceof Command) && !LEAVES.contains(kind)) {
            return "may not read " + kind + " outside its views";
        }
        for (LogicalPlan child : CollectionConverters.asJava(plan.children())) {
            String denial = denial(child, database);
            if (denial != null) {
                return denial;
            }
        }
        for (LogicalPlan sub : CollectionConverters.asJava(plan.subqueries())) {
            String denial = denial(sub, database);
            if (denial != null) {
                return denial;
            }
        }
        return null;
    }
}
