"""Configuration: base + env merge, overrides, and clear errors for bad files and missing secrets."""

from pathlib import Path

import pytest

from lakehouse.config import DEFAULT_CONF_DIR, load_config
from lakehouse.errors import ConfigError, SecretMissing, TableNotFound
from lakehouse.pii import DEMO_KEY, hmac_sha256_py, pii_key


def _conf_dir(tmp_path: Path, env_yaml: str, name: str = "local") -> Path:
    (tmp_path / "base.yaml").write_text((DEFAULT_CONF_DIR / "base.yaml").read_text())
    (tmp_path / f"{name}.yaml").write_text(env_yaml)
    return tmp_path


def test_env_file_overrides_base_and_keeps_the_rest():
    cfg = load_config("local")
    assert cfg.env == "local"
    assert cfg.spark.shuffle_partitions == 4  # local.yaml
    assert cfg.spark.conf["spark.sql.session.timeZone"] == "UTC"  # base.yaml, merged not replaced
    assert cfg.spark.conf["spark.ui.enabled"] == "false"


def test_cluster_env_names_a_standalone_master():
    cfg = load_config("cluster")
    assert cfg.spark.master.startswith("spark://")
    assert cfg.spark.shuffle_partitions > load_config("local").spark.shuffle_partitions
    assert cfg.secrets.allow_demo_key is False


def test_root_argument_moves_every_table_and_checkpoint(tmp_path):
    cfg = load_config("local", root=tmp_path / "elsewhere")
    assert cfg.root == (tmp_path / "elsewhere").resolve()
    assert cfg.table("silver.transactions").path == str(cfg.root / "tables" / "silver" / "transactions")
    assert str(cfg.checkpoint_dir("ingest_bronze", "transactions")).startswith(str(cfg.root))
    assert cfg.landing_dir == cfg.root / "landing"


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDEWATER_ROOT", str(tmp_path))
    assert load_config("local").root == tmp_path.resolve()


def test_relative_root_resolves_against_the_project_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("local").root == (DEFAULT_CONF_DIR.parent / "var" / "lakehouse").resolve()


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    conf = _conf_dir(tmp_path, "spark:\n  master: [local\n")
    with pytest.raises(ConfigError, match=r"local\.yaml:\d+: invalid YAML"):
        load_config("local", conf_dir=conf)


def test_unknown_setting_is_rejected_with_its_path(tmp_path):
    conf = _conf_dir(tmp_path, "spark:\n  shuffle_partitionz: 3\n")
    with pytest.raises(ConfigError, match=r"spark\.shuffle_partitionz"):
        load_config("local", conf_dir=conf)


def test_wrong_type_is_rejected(tmp_path):
    conf = _conf_dir(tmp_path, "spark:\n  shuffle_partitions: many\n")
    with pytest.raises(ConfigError, match=r"spark\.shuffle_partitions"):
        load_config("local", conf_dir=conf)


def test_an_env_that_extends_another_takes_its_settings_and_overrides_some():
    local, kafka = load_config("local"), load_config("kafka")
    assert kafka.spark.master == local.spark.master and kafka.spark.conf == local.spark.conf
    assert kafka.sources["transactions"].kind == "kafka" and kafka.sources["customers"].kind == "files"
    assert kafka.root != local.root


def test_an_env_that_extends_itself_is_an_error(tmp_path):
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    (conf / "loop.yaml").write_text("extends: loop\nenv: loop\n")
    with pytest.raises(ConfigError, match="loop.yaml extends 'loop'"):
        load_config("loop", conf_dir=conf)


def test_unknown_env_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        load_config("staging")
    assert "unknown env 'staging'" in str(err.value)
    assert "local" in err.value.hint and "cluster" in err.value.hint


def test_unconfigured_table_is_an_error_not_a_guess():
    with pytest.raises(TableNotFound, match="silver.nope"):
        load_config("local").table("silver.nope")


def test_missing_secret_is_an_error_outside_local(monkeypatch):
    monkeypatch.delenv("TIDEWATER_PII_KEY", raising=False)
    with pytest.raises(SecretMissing, match="TIDEWATER_PII_KEY"):
        pii_key(load_config("cluster"))


def test_local_env_falls_back_to_the_demo_key(monkeypatch):
    monkeypatch.delenv("TIDEWATER_PII_KEY", raising=False)
    assert pii_key(load_config("local")) == DEMO_KEY.encode()
    monkeypatch.setenv("TIDEWATER_PII_KEY", "s3cret")
    assert pii_key(load_config("cluster")) == b"s3cret"
    assert hmac_sha256_py("x", b"s3cret") != hmac_sha256_py("x", DEMO_KEY.encode())
