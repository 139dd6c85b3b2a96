"""The SparkSession the project builds: the driver JVM's flags come from the env's config."""

from lakehouse.config import load_config
from lakehouse.session import driver_java_options


def test_driver_flags_are_the_logging_setting_then_the_envs_then_the_confs(tmp_path):
    cfg = load_config("local", root=tmp_path)
    cfg.spark.conf["spark.driver.extraJavaOptions"] = "-Dtidewater.probe=1"
    flags = driver_java_options(cfg).split()
    assert flags[0].startswith("-Dlog4j2.configurationFile=file:")
    assert flags[1:] == ["-XX:+UseParallelGC", "-Dtidewater.probe=1"]


def test_the_local_driver_runs_the_collector_its_env_names(spark):
    beans = spark._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    assert {beans.get(i).getName() for i in range(beans.size())} == {"PS Scavenge", "PS MarkSweep"}
    assert spark._jvm.java.lang.System.getProperty("log4j2.configurationFile").endswith("log4j2.properties")
