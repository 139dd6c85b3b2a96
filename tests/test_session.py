"""The SparkSession the project builds: the driver JVM's flags come from the env's config."""

import shutil
import subprocess

from lakehouse.config import PROJECT_DIR, load_config
from lakehouse.session import class_archive, driver_java_options


def test_driver_flags_are_the_logging_setting_then_the_envs_then_the_launchs_then_the_confs(tmp_path):
    cfg = load_config("local", root=tmp_path)
    cfg.spark.conf["spark.driver.extraJavaOptions"] = "-Dtidewater.probe=1"
    flags = driver_java_options(cfg, "-XX:SharedArchiveFile=a.jsa").split()
    assert flags[0].startswith("-Dlog4j2.configurationFile=file:")
    directives = str(PROJECT_DIR / "conf" / "jit-directives.json")
    assert flags[1:] == ["-XX:+UseParallelGC", "-XX:+UnlockDiagnosticVMOptions",
                         f"-XX:CompilerDirectivesFile={directives}", "-XX:SharedArchiveFile=a.jsa",
                         "-Dtidewater.probe=1"]


def test_the_local_driver_leaves_query_planning_to_the_quick_compiler(spark):
    """Given the local env's compiler directives, the driver JVM has them installed: C2 excludes
    Catalyst's analyzer, and still compiles expressions (per-row code)."""
    out = subprocess.run([shutil.which("jcmd") or "jcmd", str(spark.sparkContext._gateway.proc.pid),
                          "Compiler.directives_print"], capture_output=True, text=True, check=True).stdout
    assert "org/apache/spark/sql/catalyst/analysis/*.*" in out and "Exclude:true" in out.replace(" ", "")
    assert "catalyst/expressions" not in out


def test_the_local_driver_runs_the_collector_its_env_names(spark):
    beans = spark._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    assert {beans.get(i).getName() for i in range(beans.size())} == {"PS Scavenge", "PS MarkSweep"}
    assert spark._jvm.java.lang.System.getProperty("log4j2.configurationFile").endswith("log4j2.properties")


def _jvm_counter(pid: int, name: str) -> int:
    out = subprocess.run([shutil.which("jcmd") or "jcmd", str(pid), "PerfCounter.print"],
                         capture_output=True, text=True, check=True).stdout
    return int(next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith(f"{name}=")))


def test_the_driver_maps_spark_and_delta_classes_from_the_archive_setup_wrote(spark, tmp_path):
    assert class_archive(load_config("local", root=tmp_path)).is_file(), "`make setup` writes jars/driver.jsa"
    spark.range(3).selectExpr("sum(id)").collect()
    # Java's own archive holds about 1,300 of the classes a session loads; Tidewater's, 13,000.
    assert _jvm_counter(spark.sparkContext._gateway.proc.pid, "java.cls.sharedLoadedClasses") > 10_000
    loader = spark._jvm.java.lang.ClassLoader.getSystemClassLoader()
    assert loader.loadClass("io.delta.tables.DeltaTable").getClassLoader().equals(loader)


def test_a_jvm_given_an_archive_it_cannot_use_runs_without_it(tmp_path):
    """An archive of other jars or of another Java (stale after an update) costs a warning, not the job."""
    garbage = tmp_path / "garbage.jsa"
    garbage.write_bytes(b"not an archive of these classes" * 100)
    for archive in (class_archive(load_config("local", root=tmp_path)), garbage):
        done = subprocess.run(["java", f"-XX:SharedArchiveFile={archive}", "-cp", str(tmp_path), "-version"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "OpenJDK" in done.stderr
        if archive != garbage:  # written for Spark's class path, not this one
            assert "Unable to use shared archive" in done.stdout + done.stderr
