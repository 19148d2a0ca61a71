import pytest

from app.codec import CodecError, Entry, decode, encode, new_entry


def test_round_trip():
    entry = Entry(b'{"a":1}', "application/json", 100.5, 200.25, 42)
    assert decode(encode(entry)) == entry


def test_no_expiry_round_trip():
    entry = new_entry(b"x" * 10, "text/plain", None, 0)
    assert decode(encode(entry)).expires_at is None


def test_compression_above_threshold_is_transparent():
    body = b'{"text": "' + b"repeat " * 500 + b'"}'
    entry = new_entry(body, "application/json", 60, 3)
    packed = encode(entry, compress_min_bytes=100)
    assert len(packed) < len(body)
    assert decode(packed) == entry


def test_foreign_bytes_are_rejected():
    with pytest.raises(CodecError):
        decode(b"not an entry at all, just some bytes")
    with pytest.raises(CodecError):
        decode(b"")


def test_expiry_and_age():
    entry = Entry(b"", "x", 100.0, 160.0)
    assert entry.age(130.0) == 30.0
    assert entry.remaining_ttl(130.0) == 30.0
    assert not entry.expired(159.0) and entry.expired(160.0)
