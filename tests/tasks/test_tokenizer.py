"""Tokenizers for text data sets: training each kind, encoding with truncation, reading files, the cache."""

from __future__ import annotations

import json
import logging

import pytest

from effstudio.config import ConfigError
from effstudio.tasks import tokenizer as tokenizer_module
from effstudio.tasks.tokenizer import (
    KINDS,
    TRUNCATIONS,
    TextTokenizer,
    TokenizerError,
    trained_tokenizer,
)

CORPUS = [
    "The keeper climbs the tower at dusk, and the lamp turns over the grey water.",
    "Ships far out read the light: two long flashes, then a short one, every minute.",
    "In winter the storms come early; the keeper writes the weather in his book.",
    "Café owners on the quay say the light has never failed, not once in forty years.",
    "A gull lands on the rail.\nThe keeper feeds it bread and watches the tide turn.",
] * 4
SAMPLE = "The keeper watches the tide, and the lamp turns at dusk."


def normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def trained() -> dict[str, TextTokenizer]:
    return {kind: TextTokenizer.train(kind, CORPUS, 300 if kind == "bpe" else 120) for kind in KINDS[:-1]}


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram", "char"])
def test_each_kind_round_trips_text(trained, kind) -> None:
    tok = trained[kind]
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 1, 2, 3)
    assert tok.tokens()[:5] == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert tok.vocab_size == len(tok.tokens()) <= (300 if kind == "bpe" else 120)
    texts = [*CORPUS[:5], SAMPLE]
    encoded, lengths = tok.encode_batch(texts, max_length=4096)
    for text, ids, length in zip(texts, encoded, lengths, strict=True):
        assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id and len(ids) == length
        assert tok.unk_id not in ids
        if kind in ("bpe", "char"):
            assert tok.decode(ids) == text
        else:
            assert normalised(tok.decode(ids)) == normalised(text)
    # pieces are shown readably: no byte-level 'Ġ', a space as '▁', specials by name
    shown = tok.id_to_tokens(encoded[-1])
    assert shown[0] == "[CLS]" and shown[-1] == "[SEP]"
    assert not any("Ġ" in piece or " " in piece for piece in shown)


def test_byte_level_pieces_are_shown_as_text() -> None:
    tok = TextTokenizer.train("bpe", ["naïve café ☕ coffee"] * 50, 300)
    ids = tok.encode_batch(["naïve café ☕ coffee"], max_length=64)[0][0]
    shown = tok.id_to_tokens(ids)
    assert "".join(shown[1:-1]) == "naïve▁café▁☕▁coffee"  # a space as '▁', non-ASCII as itself
    lone_byte = tok.encode_batch(["€"], max_length=8)[0][0][1]  # never seen: its three bytes, one token each
    assert tok.id_to_tokens([lone_byte]) == ["<0xE2>"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.id_to_tokens([tok.vocab_size])


def test_special_tokens_written_in_a_text_are_text(trained) -> None:
    for tok in trained.values():
        ids = tok.encode_batch(["before [SEP] after [PAD]"], max_length=64)[0][0]
        assert tok.sep_id not in ids[1:-1] and tok.pad_id not in ids


def test_a_pair_gets_a_separator(trained) -> None:
    tok = trained["char"]
    (ids,), (length,) = tok.encode_batch(["tide"], ["lamp"], max_length=64)
    assert tok.id_to_tokens(ids) == ["[CLS]", "t", "i", "d", "e", "[SEP]", "l", "a", "m", "p", "[SEP]"]
    assert length == 11 and tok.decode(ids) == "tide [SEP] lamp"
    (ids,), _ = trained["wordpiece"].encode_batch(["the lamp"], ["the tide"], max_length=64)
    assert normalised(trained["wordpiece"].decode(ids)) == "the lamp [SEP] the tide"


@pytest.mark.parametrize(("truncation", "kept"), [("head", "abcde"), ("tail", "fghij"), ("head+tail", "abcij")])
def test_truncation_keeps_the_chosen_ends(truncation, kept) -> None:
    tok = TextTokenizer.train("char", ["abcdefghij"], 100)
    (ids, short), lengths = tok.encode_batch(["abcdefghij", "ab"], max_length=7, truncation=truncation)
    assert tok.id_to_tokens(ids) == ["[CLS]", *kept, "[SEP]"]
    assert tok.id_to_tokens(short) == ["[CLS]", "a", "b", "[SEP]"]
    assert lengths == [12, 4]  # the full lengths, before the cut


def test_a_long_pair_shares_the_room() -> None:
    tok = TextTokenizer.train("char", ["abcdefghij"], 100)
    (both_long, a_short, b_short), lengths = tok.encode_batch(
        ["abcdefghij", "ab", "abcdefghij"], ["abcdefghij", "abcdefghij", "ab"], max_length=9, truncation="tail")
    assert tok.id_to_tokens(both_long) == ["[CLS]", "h", "i", "j", "[SEP]", "h", "i", "j", "[SEP]"]  # half each
    assert tok.decode(a_short) == "ab [SEP] ghij"  # the short part whole, the long one the rest
    assert tok.decode(b_short) == "ghij [SEP] ab"
    assert lengths == [23, 15, 15]


def test_encoding_refuses_impossible_settings(trained) -> None:
    tok = trained["char"]
    with pytest.raises(ConfigError, match="max_length"):
        tok.encode_batch(["abc"], max_length=2)
    with pytest.raises(ConfigError, match="max_length"):
        tok.encode_batch(["abc"], ["d"], max_length=3)
    with pytest.raises(ConfigError, match="truncation"):
        tok.encode_batch(["abc"], max_length=8, truncation="middle")
    assert set(TRUNCATIONS) == {"head", "tail", "head+tail"}


def test_training_refuses_what_cannot_work() -> None:
    with pytest.raises(TokenizerError, match="no text"):
        TextTokenizer.train("bpe", ["", ""], 300)
    with pytest.raises(TokenizerError, match="cannot train a 'file'"):
        TextTokenizer.train("file", CORPUS, 300)
    with pytest.raises(TokenizerError, match="vocab_size"):
        TextTokenizer.train("char", CORPUS, 5)


def test_the_char_vocab_holds_the_most_frequent_characters() -> None:
    tok = TextTokenizer.train("char", ["aaaa bbb cc d"], 5 + 3)
    assert tok.tokens()[5:] == ("a", "▁", "b")  # 'a' x4, then ' ' and 'b' x3 (' ' before 'b'), no room for 'c'
    ids = tok.encode_batch(["abcd"], max_length=8)[0][0]
    assert tok.decode(ids) == "ab[UNK][UNK]"


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram", "char"])
def test_saved_tokenizers_load_back_the_same(trained, tmp_path, kind) -> None:
    tok = trained[kind]
    tok.save(tmp_path / "run" / "tokenizer.json")
    assert not [p for p in (tmp_path / "run").iterdir() if p.name != "tokenizer.json"]  # no temporary left
    for again in (TextTokenizer.load(tmp_path / "run"), TextTokenizer.load(tmp_path / "run" / "tokenizer.json"),
                  TextTokenizer.from_json(tok.to_json())):
        assert again.fingerprint() == tok.fingerprint() and again.tokens() == tok.tokens()
        assert again.encode_batch([SAMPLE], max_length=64) == tok.encode_batch([SAMPLE], max_length=64)


def test_a_wordpiece_vocab_txt_loads(tmp_path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "lamp", "turn", "##s", ","]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    for path in (tmp_path / "vocab.txt", tmp_path):
        tok = TextTokenizer.load(path)
        assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.vocab_size) == (0, 1, 2, 3, 10)
        (ids,), (length,) = tok.encode_batch(["The lamp turns, glowing"], max_length=16)
        # no capital in the vocab: an uncased model's, so the text is lower-cased; punctuation splits
        assert tok.id_to_tokens(ids) == ["[CLS]", "the", "lamp", "turn", "##s", ",", "[UNK]", "[SEP]"]
        assert length == 8 and tok.decode(ids) == "the lamp turns, [UNK]"


def test_a_vocab_txt_without_specials_gets_them(tmp_path) -> None:
    (tmp_path / "vocab.txt").write_text("Lamp\nthe\n", encoding="utf-8")
    tok = TextTokenizer.load(tmp_path / "vocab.txt")
    assert tok.tokens()[:2] == ("Lamp", "the") and tok.vocab_size == 6
    assert {tok.tokens()[i] for i in (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id)} == {
        "[PAD]", "[UNK]", "[CLS]", "[SEP]"}
    (ids,), _ = tok.encode_batch(["Lamp lamp"], max_length=8)  # cased: 'lamp' is unknown
    assert tok.id_to_tokens(ids) == ["[CLS]", "Lamp", "[UNK]", "[SEP]"]


def write_bpe_pair(folder) -> None:
    """A tiny byte-level BPE pair in GPT-2's format (a space is 'Ġ')."""
    folder.mkdir(exist_ok=True)
    vocab = {"<|endoftext|>": 0, "l": 1, "a": 2, "m": 3, "p": 4, "Ġ": 5, "la": 6, "mp": 7, "lamp": 8, "Ġlamp": 9,
             "model": 10}  # a token named like a tokenizer.json's key
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\nl a\nm p\nla mp\nĠ lamp\n", encoding="utf-8")


def test_a_bpe_vocab_json_and_merges_load(tmp_path) -> None:
    write_bpe_pair(tmp_path / "gpt")
    for path in (tmp_path / "gpt", tmp_path / "gpt" / "vocab.json", tmp_path / "gpt" / "merges.txt"):
        tok = TextTokenizer.load(path)
        assert tok.sep_id == 0  # GPT-2's end of text separates; a pad, an unknown and a start are added
        assert {tok.tokens()[i] for i in (tok.pad_id, tok.unk_id, tok.cls_id)} == {"[PAD]", "[UNK]", "[CLS]"}
        assert min(tok.pad_id, tok.unk_id, tok.cls_id) == 11 and tok.vocab_size == 14
        (ids,), _ = tok.encode_batch(["lamp lamp"], max_length=8)
        assert tok.id_to_tokens(ids) == ["[CLS]", "lamp", "▁lamp", "<|endoftext|>"]
        assert tok.decode(ids) == "lamp lamp"


def bad_file(tmp_path, name: str):
    """Make the bad tokenizer file ``name`` names; return the path to load."""
    path = tmp_path / name.split(":")[0]
    if name == "missing.json":
        return path
    if name == "binary.json":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    elif name == "latin1.txt":
        path.write_bytes("caf\xe9\n".encode("latin-1"))
    elif name == "empty.txt":
        path.write_text("", encoding="utf-8")
    elif name == "malformed.json":
        path.write_text('{"model": {"type": "BPE",\n  "vocab": [1, 2', encoding="utf-8")
    elif name == "wrong-model.json":
        path.write_text('{"model": {"type": "Nope"}}', encoding="utf-8")
    elif name == "list.json":
        path.write_text("[1, 2]", encoding="utf-8")
    elif name == "repeats.txt":
        path.write_text("[PAD]\nthe\nlamp\nthe\n", encoding="utf-8")
    elif name == "vocab.json:bad merges":
        write_bpe_pair(tmp_path)
        (tmp_path / "merges.txt").write_text("#version: 0.2\nl a\nm p q\n", encoding="utf-8")
        return tmp_path / "merges.txt"
    elif name == "vocab.json:no merges":
        write_bpe_pair(tmp_path)
        (tmp_path / "merges.txt").unlink()
        return tmp_path / "merges.txt"
    elif name == "tokenizer.tar":
        path.write_text("{}", encoding="utf-8")
    elif name == "folder":
        path.mkdir()
        (path / "notes.md").write_text("no tokenizer here", encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "why"), [
    ("missing.json", "does not exist"),
    ("binary.json", "binary file"),
    ("latin1.txt", "not UTF-8"),
    ("empty.txt", "empty"),
    ("malformed.json", "not valid JSON"),
    ("wrong-model.json", "tokenizers library can read"),
    ("list.json", "neither a tokenizer.json"),
    ("repeats.txt", "line 4 repeats the token 'the' of line 2"),
    ("vocab.json:bad merges", "line 3 is not a merge"),
    ("vocab.json:no merges", "does not exist"),
    ("tokenizer.tar", "not a tokenizer file"),
    ("folder", "holds no tokenizer.json"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, name, why) -> None:
    path = bad_file(tmp_path, name)
    with pytest.raises(TokenizerError) as caught:
        TextTokenizer.load(path)
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError) and "\n" not in message
    assert message.startswith(str(path)) and why in message


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tokenizer_module, "MAX_TOKENIZER_BYTES", 100)
    path = tmp_path / "vocab.txt"
    path.write_text("".join(f"token{i}\n" for i in range(30)), encoding="utf-8")
    with pytest.raises(TokenizerError, match="larger than the limit of 100 bytes") as caught:
        TextTokenizer.load(path)
    assert str(caught.value).startswith(str(path))


def test_the_cache_returns_the_trained_tokenizer_without_training_again(tmp_path, caplog) -> None:
    calls = []

    def texts():
        calls.append(1)
        return iter(CORPUS)

    first = trained_tokenizer("bpe", 300, texts, "sha-of-the-data")
    again = trained_tokenizer("bpe", 300, texts, "sha-of-the-data")
    assert len(calls) == 1 and again.fingerprint() == first.fingerprint()
    cached = list((tmp_path / "cache" / "tasks" / "tokenizers").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".json"
    # another size, kind or data is another tokenizer
    trained_tokenizer("bpe", 290, texts, "sha-of-the-data")
    trained_tokenizer("char", 300, texts, "sha-of-the-data")
    trained_tokenizer("bpe", 300, texts, "sha-of-other-data")
    assert len(calls) == 4
    # a damaged cache file is trained again, with a warning
    cached[0].write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        repaired = trained_tokenizer("bpe", 300, texts, "sha-of-the-data")  # byte-level BPE trains the same
    assert len(calls) == 5 and repaired.fingerprint() == first.fingerprint()
    assert "training the tokenizer again" in caplog.text


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(blocker))
    with caplog.at_level(logging.WARNING):
        tok = trained_tokenizer("char", 50, lambda: CORPUS, "sha")
    assert tok.vocab_size > 5 and "could not store the trained tokenizer" in caplog.text
