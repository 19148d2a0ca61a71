"""AES-GCM sealing: round trips, keys that must not open, rotation, key parsing; and the
codec's sealed entries (header authenticated, bound to the cache key)."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.codec import Entry, Usage, decode, encode
from app.encryption import OVERHEAD, Cipher, DecryptError, parse_key

keys = st.binary(min_size=32, max_size=32)
PROPERTY = settings(max_examples=300, deadline=None)


@PROPERTY
@given(key=keys, plaintext=st.binary(max_size=4096), associated=st.binary(max_size=200))
def test_round_trip_for_any_bytes_and_key(key, plaintext, associated):
    cipher = Cipher([key])
    sealed = cipher.seal(plaintext, associated)
    assert len(sealed) == len(plaintext) + OVERHEAD
    assert cipher.open(sealed, associated) == plaintext


@PROPERTY
@given(key=keys, other=keys, plaintext=st.binary(min_size=1, max_size=1024), associated=st.binary(max_size=100))
def test_another_key_does_not_open(key, other, plaintext, associated):
    assume(key != other)
    sealed = Cipher([key]).seal(plaintext, associated)
    with pytest.raises(DecryptError) as raised:
        Cipher([other]).open(sealed, associated)
    assert raised.value.reason == "unknown_key"
    # Even claiming the sealing key's id, the wrong key fails on the tag.
    impostor = Cipher([other])
    impostor._openers = {sealed[:4]: impostor._sealer}
    with pytest.raises(DecryptError) as raised:
        impostor.open(sealed, associated)
    assert raised.value.reason == "invalid"


@PROPERTY
@given(key=keys, plaintext=st.binary(max_size=1024), bound=st.text(max_size=80), other=st.text(max_size=80))
def test_another_cache_key_does_not_open(key, plaintext, bound, other):
    assume(bound != other)
    cipher = Cipher([key])
    sealed = cipher.seal(plaintext, bound.encode())
    with pytest.raises(DecryptError):
        cipher.open(sealed, other.encode())


@PROPERTY
@given(
    key=keys, plaintext=st.binary(min_size=1, max_size=512), position=st.integers(min_value=0), bit=st.integers(0, 7)
)
def test_any_flipped_bit_does_not_open(key, plaintext, position, bit):
    cipher = Cipher([key])
    sealed = bytearray(cipher.seal(plaintext, b"k"))
    sealed[position % len(sealed)] ^= 1 << bit
    with pytest.raises(DecryptError):
        cipher.open(bytes(sealed), b"k")


def test_nonce_differs_per_write():
    cipher = Cipher([bytes(32)])
    assert cipher.seal(b"same", b"k") != cipher.seal(b"same", b"k")


def test_rotation_seals_with_the_first_and_opens_with_any():
    old, new = b"\x01" * 32, b"\x02" * 32
    written_before = Cipher([old]).seal(b"old answer", b"k")
    rotated = Cipher([new, old])
    written_after = rotated.seal(b"new answer", b"k")
    assert rotated.open(written_before, b"k") == b"old answer"
    assert Cipher([new]).open(written_after, b"k") == b"new answer"
    with pytest.raises(DecryptError):
        Cipher([old]).open(written_after, b"k")


def test_truncated_value_is_invalid():
    with pytest.raises(DecryptError) as raised:
        Cipher([bytes(32)]).open(b"short", b"k")
    assert raised.value.reason == "invalid"


def test_text_round_trip_and_plain_text_refused():
    cipher = Cipher([bytes(32)])
    sealed = cipher.seal_text("What is the capital of France?", b"k")
    assert "France" not in sealed
    assert cipher.open_text(sealed, b"k") == "What is the capital of France?"
    with pytest.raises(DecryptError) as raised:
        cipher.open_text("What is the capital of France?", b"k")
    assert raised.value.reason == "unencrypted"


KEY = bytes(range(32))


@pytest.mark.parametrize(
    "written",
    [base64.b64encode(KEY).decode(), base64.urlsafe_b64encode(KEY).decode().rstrip("="), KEY.hex(), KEY.hex().upper()],
)
def test_key_formats(written):
    assert parse_key(f" {written}\n") == KEY


@pytest.mark.parametrize(
    ("written", "complaint"),
    [
        ("", "empty"),
        ("c2VjcmV0LXZhbHVl", "decodes to 12 bytes"),
        ("not base64 at all!", "neither hex nor base64"),
        (base64.b64encode(b"\xff" * 48).decode(), "decodes to 48 bytes"),
    ],
)
def test_bad_keys_are_named_without_their_value(written, complaint):
    with pytest.raises(ValueError) as raised:
        parse_key(written)
    assert complaint in str(raised.value)
    if written:
        assert written not in str(raised.value)


# --- the codec's sealed entries -------------------------------------------------------

ENTRY = Entry(b'{"answer": "forty-two"}', "application/json", 100.5, 200.25, Usage(42), ("tag",))


def test_sealed_entry_round_trips_and_hides_the_body():
    cipher = Cipher([KEY])
    data = encode(ENTRY, None, cipher, "ns/abc")
    assert b"forty-two" not in data
    assert decode(data, cipher, "ns/abc") == ENTRY


def test_sealed_entry_compresses_before_sealing():
    cipher = Cipher([KEY])
    entry = Entry(b"repeat " * 1000, "text/plain", 1.0, None)
    data = encode(entry, 100, cipher, "k")
    assert len(data) < 1000
    assert decode(data, cipher, "k") == entry


def test_sealed_entry_under_another_key_does_not_open():
    cipher = Cipher([KEY])
    with pytest.raises(DecryptError) as raised:
        decode(encode(ENTRY, None, cipher, "ns/abc"), cipher, "ns/abd")
    assert raised.value.reason == "invalid"


def test_edited_expiry_does_not_open():
    cipher = Cipher([KEY])
    data = bytearray(encode(ENTRY, None, cipher, "k"))
    struct.pack_into("<d", data, 12, 9e9)  # expires_at, after magic, version, flags, created_at
    with pytest.raises(DecryptError):
        decode(bytes(data), cipher, "k")


def test_plaintext_and_ciphertext_are_not_mixed():
    cipher = Cipher([KEY])
    with pytest.raises(DecryptError) as raised:
        decode(encode(ENTRY), cipher, "k")
    assert raised.value.reason == "unencrypted"
    with pytest.raises(DecryptError) as raised:
        decode(encode(ENTRY, None, cipher, "k"))
    assert raised.value.reason == "unknown_key"
