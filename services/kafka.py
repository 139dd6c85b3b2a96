"""Apache Kafka in KRaft mode: one JVM that is broker and controller, from the jars `make setup` fetched.

The storage folder is formatted once (a cluster id of its own per root); the broker then keeps its
log there across restarts, so a stopped and restarted broker serves the same offsets.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from lakehouse.config import PROJECT_DIR, Config
from lakehouse.session import jars_dir
from services.process import Managed, ServiceError

LOG4J = PROJECT_DIR / "deploy" / "kafka" / "log4j2.properties"


def state_dir(cfg: Config) -> Path:
    return cfg.root / "services" / "kafka"


def _class_path(cfg: Config) -> str:
    folder = jars_dir(cfg) / "kafka"
    if not any(folder.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"the Kafka broker's jars are missing from {folder}",
                           hint="run `make setup` (it fetches them with Maven)")
    return f"{folder}/*"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("java is not on PATH", hint="the Kafka broker needs Java 17")
    return java


def properties(cfg: Config) -> str:
    """server.properties: loopback listeners, one replica of everything (a single-node development set-up)."""
    k, host = cfg.services.kafka, cfg.services.host
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{k.controller_port}",
        "listeners": f"PLAINTEXT://{host}:{k.port},CONTROLLER://{host}:{k.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{k.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(state_dir(cfg) / "data"),
        "num.partitions": str(k.partitions),
        "auto.create.topics.enable": "false",  # a mistyped topic is an error, not a new empty topic
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "-1",  # bronze replays from the topic's start: keep every message
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def initialize(cfg: Config) -> bool:
    """Write server.properties; format the storage folder the first time. True when it formatted."""
    d = state_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "server.properties"
    conf.write_text(properties(cfg))
    if (d / "data" / "meta.properties").exists():
        return False
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    cmd = [_java(), "-cp", _class_path(cfg), f"-Dlog4j2.configurationFile=file:{LOG4J}",
           "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(conf)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(f"formatting Kafka's storage failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}",
                           hint=f"folder: {d / 'data'}")
    return True


def broker_answers(cfg: Config, timeout: float = 2.0) -> bool:
    """The broker serves metadata (its port opens a little before it does)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": cfg.services.kafka_bootstrap, "log_level": 0}).list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def server(cfg: Config) -> Managed:
    k, host = cfg.services.kafka, cfg.services.host
    d = state_dir(cfg)
    argv = [_java(), f"-Xmx{k.heap}", f"-Xms{k.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile=file:{LOG4J}", f"-Dkafka.logs.dir={d}",
            "-cp", _class_path(cfg), "kafka.Kafka", str(d / "server.properties")]
    return Managed("kafka", argv, d, ports=(k.port, k.controller_port), host=host,
                   ready=lambda: broker_answers(cfg), address=f"{cfg.services.kafka_bootstrap} (Kafka bootstrap servers)")
