package dev.tidewater.spark;

import java.io.IOException;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

import org.apache.hadoop.fs.Path;
import org.apache.hadoop.security.UserGroupInformation;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.TableIdentifier;
import org.apache.spark.sql.catalyst.catalog.CatalogTable;
import org.apache.spark.sql.catalyst.catalog.HiveTableRelation;
import org.apache.spark.sql.catalyst.expressions.Attribute;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.spark.sql.execution.datasources.HadoopFsRelation;
import org.apache.spark.sql.execution.datasources.LogicalRelation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;

import scala.Option;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * The SQL server's read grants, the same as `tidewater sql` applies: a restricted user's plan may read
 * only the tables its role is granted, and without the pii grant may neither reference nor return a
 * PII column (token columns, raw payloads); it may run queries, SHOW and USE only, and read no file by
 * path. The user is the session's (HiveServer2 runs each statement as it: hive.server2.enable.doAs).
 *
 * Settings (written by `tidewater services start sql` from conf `access`):
 * spark.tidewater.access.restricted = user:role,...; spark.tidewater.access.role.ROLE.read = layer.table|layer.*,...;
 * spark.tidewater.access.role.ROLE.pii = true|false; spark.tidewater.access.piiColumns = name,...;
 * spark.tidewater.access.tables = layer.table=folder,... (Delta's relations carry the folder, not the name)
 */
final class GrantsCheck extends AbstractFunction1<LogicalPlan, BoxedUnit> {
    private static final String PREFIX = "spark.tidewater.access.";
    // LogicalRDD: Delta's own snapshot state (no SQL text makes one)
    private static final Set<String> LEAVES = Set.of("LocalRelation", "OneRowRelation", "Range", "CTERelationRef", "LogicalRDD",
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
        String role = null;
        for (String entry : setting("restricted").split(",")) {
            int colon = entry.indexOf(':');
            if (colon > 0 && entry.substring(0, colon).trim().equals(user)) {
                role = entry.substring(colon + 1).trim();
            }
        }
        if (role == null) {
            return BoxedUnit.UNIT;
        }
        Set<String> read = words(setting("role." + role + ".read"));
        Set<String> pii = Boolean.parseBoolean(setting("role." + role + ".pii")) ? Set.of() : words(setting("piiColumns"));
        Map<String, String> tables = new HashMap<>();  // table folder -> layer.table (Delta's relations name no table)
        for (String entry : setting("tables").split(",")) {
            int eq = entry.indexOf('=');
            if (eq > 0) {
                tables.put(folder(entry.substring(eq + 1)), entry.substring(0, eq).trim().toLowerCase());
            }
        }
        String denial = outputDenial(plan, pii);
        if (denial == null) {
            denial = denial(plan, read, pii, tables);
        }
        if (denial != null) {
            throw new SecurityException(user + " (role " + role + ") " + denial);
        }
        return BoxedUnit.UNIT;
    }

    private String setting(String name) {
        return session.conf().get(PREFIX + name, "");
    }

    private static Set<String> words(String text) {
        Set<String> out = new HashSet<>();
        for (String word : text.split(",")) {
            if (!word.isBlank()) {
                out.add(word.trim().toLowerCase());
            }
        }
        return out;
    }

    private static String currentUser() {
        try {
            return UserGroupInformation.getCurrentUser().getShortUserName();
        } catch (IOException err) {
            throw new SecurityException("cannot tell who is asking: " + err.getMessage(), err);
        }
    }

    private static String outputDenial(LogicalPlan plan, Set<String> pii) {
        for (Attribute attribute : CollectionConverters.asJava(plan.output())) {
            if (pii.contains(attribute.name().toLowerCase())) {
                return "has no PII grant: " + attribute.name() + " is masked";
            }
        }
        return null;
    }

    static String denial(LogicalPlan plan, Set<String> read, Set<String> pii, Map<String, String> tables) {
        String kind = plan.getClass().getSimpleName();
        if (plan instanceof Command && !COMMANDS.contains(kind)) {
            return "may run queries only (" + kind + ")";
        }
        for (Attribute used : CollectionConverters.asJava(plan.references().toSeq())) {
            if (pii.contains(used.name().toLowerCase())) {
                return "has no PII grant: " + used.name() + " is masked";
            }
        }
        if (plan.children().isEmpty() && !(plan instanceof Command)) {
            String table = tableOf(plan, tables);
            if (table != null && !reads(read, table)) {
                return "has no read grant on " + table;
            }
            if (table == null && !LEAVES.contains(kind)) {
                return "may not read files or tables by path (" + kind + " " + where(plan) + ")";
            }
        }
        for (LogicalPlan child : CollectionConverters.asJava(plan.children())) {
            String denial = denial(child, read, pii, tables);
            if (denial != null) {
                return denial;
            }
        }
        for (LogicalPlan sub : CollectionConverters.asJava(plan.subqueries())) {
            String denial = denial(sub, read, pii, tables);
            if (denial != null) {
                return denial;
            }
        }
        return null;
    }

    private static boolean reads(Set<String> read, String table) {
        String layer = table.substring(0, Math.max(table.indexOf('.'), 0));
        return read.contains("*") || read.contains(table) || read.contains(layer + ".*");
    }

    /** Where a relation reads from, for the denial's text. */
    private static String where(LogicalPlan plan) {
        if (plan instanceof LogicalRelation && ((LogicalRelation) plan).relation() instanceof HadoopFsRelation) {
            return ((HadoopFsRelation) ((LogicalRelation) plan).relation()).location().rootPaths().mkString(",");
        }
        return plan.nodeName();
    }

    private static String tableUnder(String path, Map<String, String> tables) {
        for (Map.Entry<String, String> entry : tables.entrySet()) {
            if (path.equals(entry.getKey()) || path.startsWith(entry.getKey() + "/")) {
                return entry.getValue();
            }
        }
        return null;
    }

    private static String folder(String path) {
        String bare = path.trim().replaceFirst("^file:(//)?", "");
        return bare.endsWith("/") ? bare.substring(0, bare.length() - 1) : bare;
    }

    /** layer.table of a relation on a configured table (by catalog entry or by folder); null otherwise. */
    private static String tableOf(LogicalPlan plan, Map<String, String> tables) {
        Option<CatalogTable> catalogTable = Option.empty();
        if (plan instanceof LogicalRelation) {
            LogicalRelation relation = (LogicalRelation) plan;
            catalogTable = relation.catalogTable();
            if (catalogTable.isEmpty() && relation.relation() instanceof HadoopFsRelation) {
                // The table's folder, or files under it: Delta reads its own _delta_log as the querying user
                String table = null;
                for (Path root : CollectionConverters.asJava(((HadoopFsRelation) relation.relation()).location().rootPaths())) {
                    String found = tableUnder(folder(root.toString()), tables);
                    if (found == null || (table != null && !table.equals(found))) {
                        return null;
                    }
                    table = found;
                }
                return table;
            }
        } else if (plan instanceof HiveTableRelation) {
            catalogTable = Option.apply(((HiveTableRelation) plan).tableMeta());
        } else if (plan instanceof DataSourceV2Relation) {
            Option<Identifier> id = ((DataSourceV2Relation) plan).identifier();
            if (id.isDefined() && id.get().namespace().length > 0) {
                String[] ns = id.get().namespace();
                return (ns[ns.length - 1] + "." + id.get().name()).toLowerCase();
            }
            return null;
        }
        if (catalogTable.isEmpty()) {
            return null;
        }
        TableIdentifier id = catalogTable.get().identifier();
        return id.database().isDefined() ? (id.database().get() + "." + id.table()).toLowerCase() : null;
    }
}
