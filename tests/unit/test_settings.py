"""Settings from the environment: one home per default, conversion, clear errors naming variables."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from iam_cluster.errors import ConfigError
from iam_cluster.envconf import env_names
from iam_cluster.settings import Settings, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_values_are_converted_from_their_variables(tmp_path):
    s = load_settings({
        "DATABASE_URL": "postgresql://db/iam", "DATABASE_POOL_MAX": "7", "IAM_MODEL": "base",
        "IAM_ALLOW_DOWNLOAD": "true", "IAM_CACHE_DIR": str(tmp_path), "IAM_BATCH_SIZE": "16",
        "CORS_ORIGINS": "https://a.example, https://b.example", "HF_TOKEN": "hf_x",
        "STRIPE_PRICE_PRO": "price_1", "STRIPE_PRICE_ENTERPRISE": "price_2", "IAM_SERVE_ADDRESS": "http://ray:8000",
        "IAM_BATCH_S3_PREFIXES": "s3://intake/{user_id}/, s3://shared/calls/",
    })
    assert (s.database.url, s.database.pool_max, s.models.name, s.models.allow_download) == (
        "postgresql://db/iam", 7, "base", True)
    assert s.models.cache_dir == tmp_path and s.engine.batch_size == 16
    assert s.api.cors_origins == ("https://a.example", "https://b.example")
    assert s.diarization.pyannote_token == "hf_x"  # HF_TOKEN when IAM_PYANNOTE_TOKEN is not set
    assert s.billing.price == {"pro": "price_1", "enterprise": "price_2"}
    assert s.serve.address == "http://ray:8000"
    assert s.storage.batch_s3_prefixes == ("s3://intake/{user_id}/", "s3://shared/calls/")
    assert load_settings({}) == Settings()  # nothing set: every default, from one place
    # unset: the engine decides (on with the window-by-window schedule); either value wins
    assert [load_settings(e).models.cpu_one_encode for e in ({}, {"IAM_CPU_ONE_ENCODE": "0"},
                                                                 {"IAM_CPU_ONE_ENCODE": "true"})] == [None, False, True]


@pytest.mark.parametrize(("env", "variable"), [
    ({"DATABASE_POOL_MAX": "lots"}, "DATABASE_POOL_MAX"), ({"IAM_BATCH_SIZE": "0"}, "IAM_BATCH_SIZE"),
    ({"IAM_MAX_AUDIO_SECONDS": "-1"}, "IAM_MAX_AUDIO_SECONDS"), ({"IAM_ALLOW_DOWNLOAD": "maybe"}, "IAM_ALLOW_DOWNLOAD"),
    ({"WORKER_LEASE_SECONDS": "0"}, "WORKER_LEASE_SECONDS"),
    ({"IAM_BATCH_S3_PREFIXES": "/srv/recordings/"}, "IAM_BATCH_S3_PREFIXES"),
    ({"IAM_CPU_ONE_ENCODE": "sometimes"}, "IAM_CPU_ONE_ENCODE"),
])
def test_a_bad_value_names_its_variable(env, variable):
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        load_settings(env)


def test_secrets_and_the_database_are_required_where_used():
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY is not set"):
        load_settings({}).auth.require_secret()
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_settings({"JWT_SECRET_KEY": "short"}).auth.require_secret()
    assert load_settings({"JWT_SECRET_KEY": "x" * 32}).auth.require_secret() == "x" * 32
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        load_settings({}).database.require_url()


def test_readme_documents_every_variable():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README.read_text()))
    missing = []
    for section in msgspec.structs.fields(Settings):
        for field in msgspec.structs.fields(section.type):
            name = env_names(section.type, field.name)[0]
            if name not in documented and not (field.name == "price" and "STRIPE_PRICE_<PLAN>" in README.read_text()):
                missing.append(name)
    assert missing == []


def test_the_api_refuses_to_start_without_its_secret(monkeypatch, capsys):
    from iam_cluster.cli import main
    from iam_cluster.settings import get_settings

    for name in ("JWT_SECRET_KEY", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        assert main(["api", "--port", "1"]) == 2
        assert "JWT_SECRET_KEY is not set" in capsys.readouterr().err
        monkeypatch.setenv("JWT_SECRET_KEY", "s" * 40)
        get_settings.cache_clear()
        assert main(["api", "--port", "1"]) == 2
        assert "DATABASE_URL is not set" in capsys.readouterr().err
        assert main(["migrate"]) == 2  # never the maintenance database by default
    finally:
        get_settings.cache_clear()
