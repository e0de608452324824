"""Settings: the embedded defaults, and the refusal to start in production without secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s;"
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'debug': s.DEBUG,"
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'cache': s.CACHES['default']['BACKEND'],"
    "'key': bool(s.SECRET_KEY)}))"
)


def _run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    clean.update(DJANGO_SETTINGS_MODULE="config.settings", GATEHOUSE_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_embedded_defaults_need_nothing_set(tmp_path: Path) -> None:
    result = _run({}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"db": "django.db.backends.sqlite3"' in result.stdout
    assert '"debug": true' in result.stdout
    assert "InMemoryChannelLayer" in result.stdout
    assert "LocMemCache" in result.stdout
    assert '"key": true' in result.stdout
    assert (tmp_path / "dev-secret-key").exists()


def test_redis_url_switches_cache_and_channel_layer(tmp_path: Path) -> None:
    result = _run({"REDIS_URL": "redis://127.0.0.1:6379/0"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "RedisChannelLayer" in result.stdout
    assert "RedisCache" in result.stdout


def test_database_url_selects_postgresql(tmp_path: Path) -> None:
    result = _run({"DATABASE_URL": "postgres://u@127.0.0.1:5432/x"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "postgresql" in result.stdout


def test_production_refuses_to_start_naming_every_missing_variable(tmp_path: Path) -> None:
    result = _run({"DEBUG": "false"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "ALLOWED_HOSTS" in result.stderr
    assert "GATEHOUSE_ENCRYPTION_KEYS" in result.stderr


def test_production_names_only_what_is_missing(tmp_path: Path) -> None:
    result = _run(
        {"DEBUG": "false", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "gh.example"}, tmp_path
    )
    assert result.returncode != 0
    assert "GATEHOUSE_ENCRYPTION_KEYS" in result.stderr
    assert "SECRET_KEY," not in result.stderr


def test_production_starts_with_everything_set(tmp_path: Path) -> None:
    env = {
        "DEBUG": "false",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "gh.example",
        "GATEHOUSE_ENCRYPTION_KEYS": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
    }
    result = _run(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"debug": false' in result.stdout
