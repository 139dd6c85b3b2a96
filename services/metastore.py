"""The shared Hive metastore: Debian's PostgreSQL server under the storage root, with Hive's schema.

Every Spark process of the `hive` catalog (jobs, notebooks, the SQL server) reads the metastore's
connection from <root>/services/metastore/client/hive-site.xml on its driver class path. That file is
the one place the password is written (mode 0600): never a command line, a Spark conf or a log.
The schema is created once, up front, by DataNucleus' SchemaTool from the `package.jdo` inside the
hive-metastore jar Spark ships (letting Hive create it on first use deadlocks on the first CREATE TABLE).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

from lakehouse.config import Config
from lakehouse.session import jdbc_jar, metastore_client_dir
from services.process import Managed, ServiceError, as_user

PG_VERSIONS_DIR = Path("/usr/lib/postgresql")


def pg_bin(tool: str) -> str:
    """A PostgreSQL server program (initdb, postgres, psql) from Debian's packages."""
    for version_dir in sorted(PG_VERSIONS_DIR.glob("*"), reverse=True):
        if (version_dir / "bin" / tool).is_file():
            return str(version_dir / "bin" / tool)
    found = shutil.which(tool)
    if found:
        return found
    raise ServiceError(f"PostgreSQL's {tool} is not installed",
                       hint="`make setup` installs Debian's postgresql package (apt-get)")


def state_dir(cfg: Config) -> Path:
    return cfg.root / "services" / "metastore"


def _server_user() -> str | None:
    """PostgreSQL will not run as root: as root, its server runs as Debian's `postgres` user."""
    return "postgres" if os.geteuid() == 0 else None


def _owned_by_server(path: Path) -> None:
    user = _server_user()
    if user:
        shutil.chown(path, user=user, group=None)


def _reachable_by_server(path: Path) -> None:
    """The server's own user must be able to walk down to its data folder."""
    if _server_user() is None:
        return
    for parent in [*reversed(path.parents)]:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            raise ServiceError(f"PostgreSQL runs as user postgres, which cannot enter {parent}",
                               hint=f"`chmod o+x {parent}`, or choose a storage root it can reach")


def jdbc_url(cfg: Config) -> str:
    m = cfg.services.metastore
    return f"jdbc:postgresql://{m.host or cfg.services.host}:{m.port}/{m.database}"


def password(cfg: Config) -> str:
    name = cfg.services.metastore.password_env
    value = os.environ.get(name)
    if not value:
        raise ServiceError(f"${name} is not set: the metastore needs a password the first time it starts",
                           hint=f"export {name}=$(openssl rand -hex 16)")
    return value


def server(cfg: Config) -> Managed:
    m, host = cfg.services.metastore, cfg.services.host
    d = state_dir(cfg)
    argv = [pg_bin("postgres"), "-D", str(d / "pgdata"), "-p", str(m.port), "-h", host, "-k", str(d / "socket")]
    return Managed("metastore", argv, d, ports=(m.port,), host=host, user=_server_user(),
                   address=f"postgresql://{host}:{m.port}/{m.database}")


def initialize(cfg: Config) -> bool:
    """Create the PostgreSQL cluster's files the first time (initdb). True when it did."""
    d = state_dir(cfg)
    data = d / "pgdata"
    if (data / "PG_VERSION").exists():
        return False
    if _server_user() is not None:  # made under umask 077 (lakehouse.private_files): let it walk through, not read
        d.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(d.parent, os.stat(d.parent).st_mode | 0o001)
    _reachable_by_server(d)
    for sub in (d, d / "socket"):
        sub.mkdir(parents=True, exist_ok=True)
        _owned_by_server(sub)
    # Local socket: the server's own user only; TCP: password (scram) for the metastore's role.
    cmd = [pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
           "--auth-local=trust", "--auth-host=scram-sha-256"]
    done = subprocess.run(cmd, capture_output=True, text=True, **as_user(_server_user()))
    if done.returncode != 0:
        raise ServiceError(f"initdb failed: {done.stderr.strip().splitlines()[-1:]}", hint=f"data folder: {data}")
    return True


def _psql(cfg: Config, script: str) -> str:
    """Run SQL as the server's superuser over its Unix socket (the script on stdin, never in argv)."""
    cmd = [pg_bin("psql"), "-h", str(state_dir(cfg) / "socket"), "-p", str(cfg.services.metastore.port),
           "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"]
    done = subprocess.run(cmd, input=script, capture_output=True, text=True, **as_user(_server_user()))
    if done.returncode != 0:
        raise ServiceError(f"metastore set-up failed: {done.stderr.strip()}")
    return done.stdout


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _datanucleus_settings(cfg: Config, secret: str) -> dict[str, str]:
    m = cfg.services.metastore
    return {"javax.jdo.option.ConnectionURL": jdbc_url(cfg),
            "javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
            "javax.jdo.option.ConnectionUserName": m.user,
            "javax.jdo.option.ConnectionPassword": secret}


def write_client_conf(cfg: Config, secret: str) -> Path:
    settings = {**_datanucleus_settings(cfg, secret),
                "hive.metastore.schema.verification": "false",
                "datanucleus.schema.autoCreateAll": "false"}
    body = "".join(f"  <property><name>{k}</name><value>{escape(v)}</value></property>\n" for k, v in settings.items())
    path = metastore_client_dir(cfg) / "hive-site.xml"
    _write_private(path, f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n')
    return path


def _create_hive_schema(cfg: Config, secret: str) -> None:
    from pyspark.find_spark_home import _find_spark_home

    spark_jars = Path(_find_spark_home()) / "jars"
    metastore_jar = next(spark_jars.glob("hive-metastore-*.jar"))
    with tempfile.TemporaryDirectory(dir=state_dir(cfg)) as tmp:
        with zipfile.ZipFile(metastore_jar) as jar:
            jar.extract("package.jdo", tmp)
        props = Path(tmp) / "datanucleus.properties"
        # Hive's own DataNucleus defaults (HiveConf): without them the column names differ (IDX, not INTEGER_IDX).
        settings = {**_datanucleus_settings(cfg, secret), "datanucleus.identifierFactory": "datanucleus1",
                    "datanucleus.rdbms.useLegacyNativeValueStrategy": "true"}
        _write_private(props, "".join(f"{k}={v}\n" for k, v in settings.items()))
        cmd = ["java", "-cp", f"{spark_jars}/*:{jdbc_jar(cfg)}", "org.datanucleus.store.schema.SchemaTool",
               "-create", "-api", "JDO", "-props", str(props), str(Path(tmp) / "package.jdo")]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or "completed successfully" not in done.stdout:
        raise ServiceError(f"creating the Hive metastore schema failed: {(done.stdout + done.stderr).strip()[-300:]}")


def prepare(cfg: Config) -> str:
    """After the server is up: role, database and Hive schema once; the client conf every time."""
    m = cfg.services.metastore
    secret = password(cfg) if not (metastore_client_dir(cfg) / "hive-site.xml").exists() or os.environ.get(m.password_env) \
        else None
    if secret is None:
        return "metastore: ready (schema and client settings already in place)"
    has_role = _psql(cfg, f"SELECT 1 FROM pg_roles WHERE rolname = {_quote(m.user)};").strip() == "1"
    verb = "ALTER" if has_role else "CREATE"
    _psql(cfg, f'{verb} ROLE "{m.user}" LOGIN PASSWORD {_quote(secret)};')
    if _psql(cfg, f"SELECT 1 FROM pg_database WHERE datname = {_quote(m.database)};").strip() != "1":
        _psql(cfg, f'CREATE DATABASE "{m.database}" OWNER "{m.user}";')
    write_client_conf(cfg, secret)
    schema = _psql(cfg, f"\\c {m.database}\nSELECT to_regclass('public.\"DBS\"') IS NOT NULL;").strip().splitlines()[-1]
    if schema != "t":
        _create_hive_schema(cfg, secret)
        return f"metastore: Hive schema created in {m.database}; clients read {metastore_client_dir(cfg)}"
    return f"metastore: ready; clients read {metastore_client_dir(cfg)}"
