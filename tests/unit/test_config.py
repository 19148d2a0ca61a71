"""Config: YAML + env, ${VAR} expansion, unknown keys and types refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_embedded_default_config_is_local_then_disk():
    settings = load_settings(ROOT / "config.yaml")
    assert [t.type for t in settings.cache.tiers] == ["local", "disk"]
    assert settings.server.port == 8080 and settings.server.host == "127.0.0.1"
    assert settings.admin.token is None


def test_env_overrides_file(tmp_path, monkeypatch):
    path = write(tmp_path, "cache: {ttl_s: 10, mode: default_on}\nupstream: {base_url: http://a/v1}\n")
    monkeypatch.setenv("LLMCACHE_CACHE__TTL_S", "20")
    monkeypatch.setenv("LLMCACHE_UPSTREAM__BASE_URL", "http://b/v1")
    monkeypatch.setenv("LLMCACHE_CACHE__TIERS", '[{"type": "local", "max_entries": 5}]')
    settings = load_settings(path)
    assert settings.cache.ttl_s == 20
    assert settings.cache.mode == "default_on"
    assert settings.upstream.base_url == "http://b/v1"
    assert settings.cache.tiers[0].max_entries == 5


def test_env_reference_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_UPSTREAM_KEY", "sk-from-env")
    path = write(tmp_path, "upstream: {api_key: '${MY_UPSTREAM_KEY}'}\n")
    assert load_settings(path).upstream.api_key == "sk-from-env"
    monkeypatch.delenv("MY_UPSTREAM_KEY")
    with pytest.raises(ConfigError, match="MY_UPSTREAM_KEY"):
        load_settings(path)


@pytest.mark.parametrize(
    "text, named",
    [
        ("server: {prot: 1}\n", "server.prot"),
        ("bogus: {}\n", "bogus"),
        ("cache: {tiers: [{type: local, max_entires: 3}]}\n", "cache.tiers.0.max_entires"),
        ("cache: {tiers: [{type: memcached}]}\n", "memcached"),
        ("cache: {tiers: [{type: s3}]}\n", "cache.tiers.0.bucket"),
        ("cache: {tiers: [{type: redis, prot: 1}]}\n", "cache.tiers.0.prot"),
        ("cache: {tiers: [{type: redis, sentinels: [{host: s}]}]}\n", "service_name"),
        ("cache: {tiers: [{type: redis, service_name: m}]}\n", "service_name"),
        ("cache: {tiers: [{type: redis, service_name: m, sentinels: [{host: s}], url: 'redis://r'}]}\n", "url"),
        (
            "cache: {tiers: [{type: redis, service_name: m, sentinels: [{host: s}], startup_nodes: [{host: c}]}]}\n",
            "startup_nodes",
        ),
        ("cache: {mode: sometimes}\n", "cache.mode"),
        ("cache: {call_types: [pictures]}\n", "cache.call_types"),
        ("cache: {ttl_s: -1}\n", "cache.ttl_s"),
        ("cache: {tiers: [{type: local}, {type: local}]}\n", "unique"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, named):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text))
    assert named in str(raised.value)


def test_unknown_env_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCACHE_CACHE__TTLS", "5")
    with pytest.raises(ConfigError, match="ttls"):
        load_settings(write(tmp_path, "{}\n"))


def test_unreadable_config_is_a_config_error(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00cache: {}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(binary)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path)  # a directory


def test_sentinel_tier(tmp_path):
    text = "cache: {tiers: [{type: redis, service_name: mymaster, sentinels: [{host: s1}, {host: s2, port: 5000}]}]}\n"
    tier = load_settings(write(tmp_path, text)).cache.tiers[0]
    assert [(n.host, n.port) for n in tier.sentinels] == [("s1", 26379), ("s2", 5000)]
    assert tier.service_name == "mymaster"


GOOD_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes 0..31 as base64
OLD_KEY = "1f" * 32


def test_encryption_key_and_rotation_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCACHE_KEY", GOOD_KEY)
    monkeypatch.setenv("LLMCACHE_OLD_KEY", OLD_KEY)
    one = load_settings(write(tmp_path, "cache: {encryption: {key: '${LLMCACHE_KEY}'}}\n"))
    assert one.cache.encryption is not None and one.cache.encryption.secrets() == [bytes(range(32))]
    rotation = load_settings(
        write(tmp_path, "cache:\n  encryption: {keys: ['${LLMCACHE_KEY}', '${LLMCACHE_OLD_KEY}']}\n")
    )
    assert rotation.cache.encryption is not None
    assert rotation.cache.encryption.secrets() == [bytes(range(32)), b"\x1f" * 32]
    assert GOOD_KEY not in repr(rotation) and OLD_KEY not in repr(rotation)


def test_encryption_key_from_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCACHE_CACHE__ENCRYPTION__KEY", GOOD_KEY)
    settings = load_settings(None)
    assert settings.cache.encryption is not None and settings.cache.encryption.secrets() == [bytes(range(32))]


@pytest.mark.parametrize(
    ("encryption", "named"),
    [
        ("{key: c2VjcmV0LXZhbHVl}", "cache.encryption.key: Value error, the key decodes to 12 bytes"),
        (f"{{keys: [{GOOD_KEY}, short secret value!]}}", "cache.encryption.keys.1: Value error, the key is neither"),
        (f"{{key: {GOOD_KEY}, keys: [{GOOD_KEY}]}}", "cache.encryption: Value error, set either key"),
        ("{keys: []}", "cache.encryption: Value error, set either key"),
        ("{key: ''}", "cache.encryption.key: Value error, the key is empty"),
    ],
)
def test_bad_encryption_key_names_the_key_never_its_value(tmp_path, encryption, named):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, f"cache: {{encryption: {encryption}}}\n"))
    assert named in str(raised.value)
    for secret in ("c2VjcmV0LXZhbHVl", "short secret value!"):
        assert secret not in str(raised.value)


def test_check_config_shows_encryption_without_keys(tmp_path, monkeypatch):
    from app.cli import describe

    text = f"cache:\n  encryption: {{keys: ['{GOOD_KEY}', '{OLD_KEY}']}}\n"
    shown = describe(load_settings(write(tmp_path, text)))
    assert "encryption: AES-256-GCM, 2 keys (the first for new writes)" in shown
    assert GOOD_KEY not in shown and OLD_KEY not in shown
