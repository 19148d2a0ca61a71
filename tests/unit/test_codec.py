import struct

import pytest

from app.codec import CodecError, Entry, Usage, body_view, decode, encode, new_entry


def test_round_trip():
    entry = Entry(b'{"a":1}', "application/json", 100.5, 200.25, Usage(42, 30, 12, 8), ("team-a", "faq"))
    assert decode(encode(entry)) == entry


def test_no_expiry_round_trip():
    entry = new_entry(b"x" * 10, "text/plain", None)
    assert decode(encode(entry)).expires_at is None


def test_compression_above_threshold_is_transparent():
    body = b'{"text": "' + b"repeat " * 500 + b'"}'
    entry = new_entry(body, "application/json", 60, Usage(3), ("t",))
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


def test_body_view_skips_content_type_and_tags():
    entry = new_entry(b"the body", "text/plain", 60, Usage(5, 2, 3), ("a", "b"))
    view = body_view(encode(entry))
    assert view is not None and bytes(view) == b"the body"


def test_version_one_entries_are_still_read():
    # magic, version 1, flags, created, expires, total tokens, content-type length
    old = struct.pack("<HBBddIH", 0x4C43, 1, 0, 10.0, 20.0, 9, 4) + b"text" + b"old body"
    entry = decode(old)
    assert (entry.body, entry.content_type, entry.tokens, entry.tags) == (b"old body", "text", 9, ())
    view = body_view(old)
    assert view is not None and bytes(view) == b"old body"


def test_tag_length_past_the_end_is_refused():
    data = bytearray(encode(new_entry(b"x", "t", 60, tags=("abc",))))
    data[struct.calcsize("<HBBddIHIII") : struct.calcsize("<HBBddIHIIIH")] = struct.pack("<H", 60000)
    with pytest.raises(CodecError):
        decode(bytes(data))
