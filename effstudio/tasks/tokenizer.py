"""Real tokenizers for text data sets: trained on the training split or read from a tokenizer file.

Every kind is a ``tokenizers.Tokenizer`` (the Rust library: fast training, parallel batch encoding) wrapped
in :class:`TextTokenizer`, so saving, loading, encoding and showing pieces work the same whatever it is:

- ``bpe``: byte-level BPE (GPT-2's scheme). Every byte has a token, so no text is unknown and decoding
  gives the text back exactly.
- ``wordpiece``: BERT's scheme over whitespace-separated words, continuation pieces marked ``##``.
  Decoding gives the words back joined by single spaces.
- ``unigram``: SentencePiece's unigram model, a word's first piece marked ``▁``.
- ``char``: one token per character: the ``vocab_size`` most frequent characters of the training texts.
- ``file``: an existing ``tokenizer.json``, a WordPiece ``vocab.txt`` or a byte-level BPE ``vocab.json``
  with its ``merges.txt``.

Trained tokenizers hold the special tokens first: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4; a loaded one
keeps its own ids and gets whichever of [PAD] [UNK] [CLS] [SEP] it lacks appended. An example reads
``[CLS] a [SEP]``, a pair ``[CLS] a [SEP] b [SEP]``. A special token written in a document ("[SEP]" in a
CSV cell) is never read as a separator or padding: as text by BPE and char, as [UNK] by WordPiece and
Unigram (whose models hold the special tokens among their pieces).

Byte-level BPE and char training give the same tokenizer every time; WordPiece and Unigram training break
ties in an order that varies from process to process, so two trainings may differ a little. The cache
(``trained_tokenizer``) and the tokenizer.json stored with each run keep one data set's tokenizer fixed.

Pieces are shown readably (``tokens()``, ``id_to_tokens()``): a byte-level piece as the text its bytes
stand for ('Ġword' as '▁word'), bytes that are part of a character as <0xNN>, and in every kind a space as
'▁', a newline as '↵' and a tab as '⇥', so the labels of an attention map stay visible.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import tokenizers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from effstudio.atomic_file import write_text_atomic
from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError
from effstudio.paths import PathError, open_regular_file, task_cache_dir
from effstudio.read_limits import MAX_TOKENIZER_BYTES

log = logging.getLogger(__name__)

KINDS = ("bpe", "wordpiece", "unigram", "char", "file")
TRAINED_KINDS = KINDS[:-1]
TRUNCATIONS = ("head", "tail", "head+tail")

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIALS = (PAD, UNK, CLS, SEP, MASK)  # in id order for trained tokenizers

# the names each role goes by in tokenizer files (BERT's, then RoBERTa's and SentencePiece's, then GPT-2's)
_ROLE_NAMES = {
    "pad": (PAD, "<pad>"),
    "unk": (UNK, "<unk>"),
    "cls": (CLS, "<s>"),
    "sep": (SEP, "</s>", "<|endoftext|>"),
}
_SHOWN_WHITESPACE = str.maketrans({" ": "▁", "\n": "↵", "\t": "⇥", "\r": "␍"})
_FILE_FIELD = "tokenizer_path"
_CACHE_FOLDER = "tokenizers"
_CACHE_FORMAT = 1  # bump when the trained pipelines change, so cached tokenizers are trained again


class TokenizerError(ConfigError):
    """A tokenizer cannot be trained or read: one line naming the file (its ``source``) and why."""


def _byte_level_table() -> dict[str, int]:
    """The byte each character of a byte-level BPE piece stands for (GPT-2's table): printable Latin-1
    bytes are written as themselves, the other 68 (controls, space, no-break space, soft hyphen) as the
    code points from 256 on, in byte order (so a space is 'Ġ', chr(256 + 32))."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {chr(byte): byte for byte in printable}
    others = sorted(set(range(256)) - set(printable))
    table.update({chr(256 + n): byte for n, byte in enumerate(others)})
    return table


_BYTE_OF = _byte_level_table()


def _bytes_shown(data: bytes) -> str:
    """UTF-8 text, with each byte of a character cut in two (a piece holds part of it) shown as <0xNN>."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        cut = "".join(f"<0x{byte:02X}>" for byte in data[err.start:err.end])
        return data[:err.start].decode("utf-8") + cut + _bytes_shown(data[err.end:])


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with its special tokens found and its pieces shown readably."""

    def __init__(self, tokenizer: Tokenizer):
        tokenizer.no_truncation()  # encode_batch cuts by itself, and reports the lengths before the cut
        tokenizer.no_padding()
        ids = {role: _role_id(tokenizer, names) for role, names in _ROLE_NAMES.items()}
        missing = [names[0] for role, names in _ROLE_NAMES.items() if ids[role] is None]
        if missing:  # a loaded file without them: appended after its vocab
            tokenizer.add_special_tokens(missing)
            ids = {role: _role_id(tokenizer, names) for role, names in _ROLE_NAMES.items()}
        if tokenizer.post_processor is None:
            tokenizer.post_processor = _template(tokenizer, ids["cls"], ids["sep"])
        # encode_special_tokens is not saved with the tokenizer, so it is set on every one made
        tokenizer.encode_special_tokens = True
        self._tokenizer = tokenizer
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = ids["pad"], ids["unk"], ids["cls"], ids["sep"]
        self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        self._markers = {self.pad_id, self.cls_id, self.sep_id} | {
            i for i in [tokenizer.token_to_id(MASK)] if i is not None}
        self._byte_level = _uses_byte_level(tokenizer)
        self._tokens: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ making one
    @classmethod
    def train(cls, kind: str, texts: Iterable[str], vocab_size: int) -> TextTokenizer:
        """A tokenizer of ``kind`` trained on ``texts`` to at most ``vocab_size`` tokens, specials
        included (byte-level BPE always holds the 256 bytes; a small corpus may give fewer)."""
        if kind not in TRAINED_KINDS:
            raise TokenizerError("tokenizer", f"cannot train a {kind!r} tokenizer; choose one of "
                                              f"{', '.join(TRAINED_KINDS)}")
        if vocab_size <= len(SPECIALS):
            raise TokenizerError("vocab_size", f"{vocab_size} leaves no room beside the {len(SPECIALS)} "
                                               "special tokens")
        seen = _Seen(texts)
        tokenizer = _train_characters(seen, vocab_size) if kind == "char" else _train_model(kind, seen, vocab_size)
        if not seen.any_text:
            raise TokenizerError("tokenizer", "there is no text to train the tokenizer on")
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        """Read a ``tokenizer.json``, a WordPiece ``vocab.txt`` or a byte-level BPE ``vocab.json`` with
        ``merges.txt`` beside it: give the file (either of the pair) or the folder holding them."""
        path = Path(path)
        if path.is_dir():
            return cls(_tokenizer_in_folder(path))
        return cls(_tokenizer_from_file(path, _read_text(path)))

    @classmethod
    def from_json(cls, text: str) -> TextTokenizer:
        """The tokenizer ``to_json`` wrote (a tokenizer.json's text)."""
        try:
            return cls(Tokenizer.from_str(text))
        except Exception as err:  # the library raises bare Exceptions for every malformed file
            raise TokenizerError(_FILE_FIELD, f"not a tokenizer: {_one_line(err)}") from None

    def to_json(self) -> str:
        return self._tokenizer.to_str()

    def save(self, path: str | Path) -> None:
        """Write the tokenizer.json to ``path`` through a temporary file, so no reader sees half of it."""
        write_text_atomic(path, self.to_json())

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ using one
    def encode_batch(self, texts: Sequence[str], pairs: Sequence[str] | None = None, *, max_length: int,
                     truncation: str = "head") -> tuple[list[list[int]], list[int]]:
        """Ids of ``[CLS] text [SEP]`` (``[CLS] text [SEP] pair [SEP]`` with pairs) per example, cut to
        ``max_length`` by ``truncation`` with the special tokens kept, and each example's full length.

        A pair too long shares the room: the shorter part keeps all it has up to half, the longer the rest.
        "head" keeps a part's start, "tail" its end, "head+tail" the first and the last half of the room.
        """
        if truncation not in TRUNCATIONS:
            raise ConfigError("truncation", f"{truncation!r} is not one of {', '.join(TRUNCATIONS)}")
        specials = 2 if pairs is None else 3
        if max_length <= specials:
            raise ConfigError("max_length", f"{max_length} leaves no room for text beside the "
                                             f"{specials} special tokens")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        room = max_length - specials
        firsts = self._encode_plain(texts)
        if pairs is None:
            return ([[self.cls_id, *_cut(ids, room, truncation), self.sep_id] for ids in firsts],
                    [len(ids) + specials for ids in firsts])
        seconds = self._encode_plain(pairs)
        encoded, lengths = [], []
        for a, b in zip(firsts, seconds, strict=True):
            keep_b = min(len(b), max(room - len(a), room // 2))
            keep_a = min(len(a), room - keep_b)
            encoded.append([self.cls_id, *_cut(a, keep_a, truncation), self.sep_id,
                            *_cut(b, keep_b, truncation), self.sep_id])
            lengths.append(len(a) + len(b) + specials)
        return encoded, lengths

    def _encode_plain(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text without special tokens, encoded in parallel (no character offsets computed).

        A WordPiece or Unigram model holds the special tokens among its pieces and reads a word "[SEP]"
        in a text as one; such a marker is unknown text ([UNK]), never a separator or padding."""
        encoded = [encoding.ids for encoding in
                   self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]
        for ids in encoded:
            if not self._markers.isdisjoint(ids):
                ids[:] = [self.unk_id if i in self._markers else i for i in ids]
        return encoded

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``: padding, the leading [CLS] and the final [SEP] left out; the two texts of
        a pair joined by " [SEP] "; unknown pieces shown as their token ([UNK])."""
        ids = [i for i in map(int, ids) if i != self.pad_id]
        if ids and ids[0] == self.cls_id:
            ids = ids[1:]
        if ids and ids[-1] == self.sep_id:
            ids = ids[:-1]
        parts: list[list[int]] = [[]]
        for i in ids:
            if i == self.sep_id:
                parts.append([])
            else:
                parts[-1].append(i)
        separator = f" {self._tokenizer.id_to_token(self.sep_id)} "
        return separator.join(self._tokenizer.decode(part, skip_special_tokens=False) for part in parts)

    def tokens(self) -> tuple[str, ...]:
        """Every token's readable piece by id."""
        if self._tokens is None:
            self._tokens = tuple(self._shown(self._tokenizer.id_to_token(i)) for i in range(self.vocab_size))
        return self._tokens

    def id_to_tokens(self, ids: Sequence[int]) -> list[str]:
        tokens = self.tokens()
        shown = []
        for i in map(int, ids):
            if not 0 <= i < len(tokens):
                raise ValueError(f"token id {i} is outside the vocabulary of {len(tokens)}")
            shown.append(tokens[i])
        return shown

    def _shown(self, piece: str | None) -> str:
        if piece is None:  # an id no token has (a file whose ids leave gaps)
            return "[unused]"
        if self._byte_level and all(char in _BYTE_OF for char in piece):
            piece = _bytes_shown(bytes(_BYTE_OF[char] for char in piece))
        return piece.translate(_SHOWN_WHITESPACE)


def _role_id(tokenizer: Tokenizer, names: Sequence[str]) -> int | None:
    return next((i for i in map(tokenizer.token_to_id, names) if i is not None), None)


def _template(tokenizer: Tokenizer, cls_id: int, sep_id: int) -> processors.TemplateProcessing:
    """The post-processor that writes [CLS] a [SEP] (b [SEP]) when the tokenizer is used by itself."""
    cls, sep = tokenizer.id_to_token(cls_id), tokenizer.id_to_token(sep_id)
    return processors.TemplateProcessing(single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
                                         special_tokens=[(cls, cls_id), (sep, sep_id)])


def _uses_byte_level(tokenizer: Tokenizer) -> bool:
    """Whether the decoder reads pieces as byte-level characters (alone or in a sequence of decoders)."""
    decoder = json.loads(tokenizer.to_str()).get("decoder") or {}
    stack = [decoder]
    while stack:
        part = stack.pop()
        if part.get("type") == "ByteLevel":
            return True
        stack.extend(item for item in part.get("decoders") or () if isinstance(item, dict))
    return False


def _cut(ids: list[int], keep: int, truncation: str) -> list[int]:
    if len(ids) <= keep:
        return ids
    if truncation == "head":
        return ids[:keep]
    if truncation == "tail":
        return ids[len(ids) - keep:]
    end = keep // 2  # head+tail: the start gets the odd token
    return ids[:keep - end] + ids[len(ids) - end:]


# ---------------------------------------------------------------------- training
class _Seen:
    """The training texts, passed through once, noting whether any held a character."""

    def __init__(self, texts: Iterable[str]):
        self._texts = texts
        self.any_text = False

    def __iter__(self) -> Iterator[str]:
        for text in self._texts:
            self.any_text = self.any_text or bool(text)
            yield text


def _train_model(kind: str, texts: Iterable[str], vocab_size: int) -> Tokenizer:
    common = {"vocab_size": vocab_size, "special_tokens": list(SPECIALS), "show_progress": False}
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common)
    elif kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        # words are split at whitespace only, not at punctuation, so decoding rejoins "word," as it was
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tokenizer.decoder = decoders.WordPiece(cleanup=False)
        trainer = trainers.WordPieceTrainer(**common)
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(unk_token=UNK, **common)
    try:
        tokenizer.train_from_iterator(texts, trainer)
    except TypeError as err:  # a text that is not a string
        raise TokenizerError("tokenizer", f"cannot train on the texts: {_one_line(err)}") from None
    return _scores_rounded(tokenizer) if kind == "unigram" else tokenizer


def _scores_rounded(tokenizer: Tokenizer) -> Tokenizer:
    """The Unigram model with its scores rounded to 12 digits: the library reads its own longer numbers
    back a last bit off, and a tokenizer must read back as it was saved (its fingerprint names it)."""
    spec = json.loads(tokenizer.to_str())
    spec["model"]["vocab"] = [[piece, round(score, 12)] for piece, score in spec["model"]["vocab"]]
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))


def _train_characters(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """One token per character: the most frequent characters (ties by code point), the rest [UNK]."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    ranked = sorted(counts, key=lambda char: (-counts[char], char))[:vocab_size - len(SPECIALS)]
    vocab = {token: i for i, token in enumerate((*SPECIALS, *ranked))}
    # a BPE model without merges reads each character as a token of its own (each unknown one as [UNK]),
    # three times as fast as a word-level model behind a pre-tokenizer that cuts the text into characters
    tokenizer = Tokenizer(models.BPE(vocab, [], unk_token=UNK))
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(list(SPECIALS))
    return tokenizer


# ---------------------------------------------------------------------- reading files
def _read_text(path: Path) -> str:
    """A tokenizer file's text: missing, not a regular file, oversized, empty, binary or not UTF-8 is a
    TokenizerError naming it."""
    try:
        with open_regular_file(path, what="tokenizer") as handle:
            data = handle.read(MAX_TOKENIZER_BYTES + 1)
    except PathError as err:
        raise TokenizerError(_FILE_FIELD, err.reason, str(path)) from None
    except OSError as err:
        raise TokenizerError(_FILE_FIELD, f"cannot read it: {err.strerror or err}", str(path)) from None
    if len(data) > MAX_TOKENIZER_BYTES:
        raise TokenizerError(_FILE_FIELD, f"larger than the limit of {MAX_TOKENIZER_BYTES:,} bytes for a "
                                          "tokenizer file", str(path))
    if not data.strip():
        raise TokenizerError(_FILE_FIELD, "the file is empty", str(path))
    if b"\x00" in data:
        raise TokenizerError(_FILE_FIELD, "a binary file (it holds NUL bytes), not a tokenizer file", str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TokenizerError(_FILE_FIELD, f"not UTF-8 text (byte {err.start} cannot be decoded)", str(path)) from None


def _tokenizer_in_folder(folder: Path) -> Tokenizer:
    for name in ("tokenizer.json", "vocab.txt", "vocab.json"):
        if (folder / name).is_file():
            return _tokenizer_from_file(folder / name, _read_text(folder / name))
    raise TokenizerError(_FILE_FIELD, "the folder holds no tokenizer.json, vocab.txt, or vocab.json with "
                                      "merges.txt", str(folder))


def _tokenizer_from_file(path: Path, text: str) -> Tokenizer:
    if path.suffix == ".txt" and path.name.endswith("merges.txt"):
        vocab_path = path.with_name("vocab.json")
        return _byte_level_bpe(vocab_path, _read_text(vocab_path), path, text)
    if path.suffix == ".txt":
        return _wordpiece_from_vocab(path, text)
    if path.suffix != ".json":
        raise TokenizerError(_FILE_FIELD, "not a tokenizer file: give a tokenizer.json, a vocab.txt, or a "
                                          "vocab.json with merges.txt", str(path))
    try:
        value = loads_json(text, source=path, field=_FILE_FIELD, max_bytes=MAX_TOKENIZER_BYTES)
    except ConfigError as err:
        raise TokenizerError(err.field, err.message, err.source) from None
    if isinstance(value, dict) and isinstance(value.get("model"), dict):  # GPT-2's vocab has a token "model"
        try:
            return Tokenizer.from_str(text)
        except Exception as err:  # the library raises bare Exceptions for every malformed file
            raise TokenizerError(_FILE_FIELD, f"not a tokenizer the tokenizers library can read: "
                                              f"{_one_line(err)}", str(path)) from None
    if isinstance(value, dict):
        merges_path = path.with_name("merges.txt")
        return _byte_level_bpe(path, text, merges_path, _read_text(merges_path))
    raise TokenizerError(_FILE_FIELD, "neither a tokenizer.json (an object with a \"model\") nor a BPE "
                                      "vocab.json (an object of token: id)", str(path))


def _vocab_lines(path: Path, text: str) -> list[str]:
    """The tokens of a vocab.txt, one a line, in id order; an empty or repeated token names its line."""
    tokens = [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]
    first_line: dict[str, int] = {}
    for number, token in enumerate(tokens, start=1):
        if not token:
            raise TokenizerError(_FILE_FIELD, f"line {number} is empty; a vocab.txt holds one token a line",
                                 str(path))
        if token in first_line:
            raise TokenizerError(_FILE_FIELD, f"line {number} repeats the token {token!r} of line "
                                              f"{first_line[token]}", str(path))
        first_line[token] = number
    return tokens


def _wordpiece_from_vocab(path: Path, text: str) -> Tokenizer:
    """BERT's tokenizer for its vocab.txt: cleaned text, split at whitespace and punctuation, in
    lower case when no token holds a capital (an uncased model's vocab)."""
    tokens = _vocab_lines(path, text)
    vocab = {token: i for i, token in enumerate(tokens)}
    unk = next((name for name in _ROLE_NAMES["unk"] if name in vocab), UNK)
    vocab.setdefault(unk, len(vocab))  # the model needs its unknown token in the vocab
    uncased = not any(token != token.lower() for token in tokens if not token.startswith("["))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=unk))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=uncased)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens([name for name in SPECIALS if name in vocab])
    return tokenizer


def _byte_level_bpe(vocab_path: Path, vocab_text: str, merges_path: Path, merges_text: str) -> Tokenizer:
    """GPT-2's tokenizer for a vocab.json (token: id) and its merges.txt (one "left right" pair a line)."""
    try:
        vocab = loads_json(vocab_text, source=vocab_path, field=_FILE_FIELD, max_bytes=MAX_TOKENIZER_BYTES)
    except ConfigError as err:
        raise TokenizerError(err.field, err.message, err.source) from None
    bad = next((item for item in vocab.items() if not isinstance(item[1], int) or item[1] < 0), None) \
        if isinstance(vocab, dict) else ("", None)
    if bad is not None:
        raise TokenizerError(_FILE_FIELD, f"a BPE vocab.json maps each token to an id (a whole number >= 0); "
                                          f"found {bad[0]!r}: {bad[1]!r}", str(vocab_path))
    merges = []
    for number, line in enumerate(merges_text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line or (number == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2 or not all(pair):
            raise TokenizerError(_FILE_FIELD, f"line {number} is not a merge (two pieces separated by one "
                                              "space)", str(merges_path))
        merges.append((pair[0], pair[1]))
    try:
        tokenizer = Tokenizer(models.BPE(vocab, merges))
    except Exception as err:  # a merge of pieces the vocab lacks
        raise TokenizerError(_FILE_FIELD, f"does not fit {vocab_path.name}: {_one_line(err)}",
                             str(merges_path)) from None
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([name for names in _ROLE_NAMES.values() for name in names if name in vocab])
    return tokenizer


# ---------------------------------------------------------------------- the cache
def trained_tokenizer(kind: str, vocab_size: int, texts: Callable[[], Iterable[str]],
                      content_hash: str) -> TextTokenizer:
    """The tokenizer of ``kind`` trained on the texts of data whose content hashes to ``content_hash``:
    read from the cache when trained before, else trained on ``texts()`` and stored (a failure to store
    only costs the training next time)."""
    identity = json.dumps({"content": content_hash, "kind": kind, "vocab_size": vocab_size,
                           "tokenizers": tokenizers.__version__, "format": _CACHE_FORMAT}, sort_keys=True)
    path = task_cache_dir(_CACHE_FOLDER) / f"{hashlib.sha256(identity.encode('utf-8')).hexdigest()}.json"
    if path.exists():
        try:
            return TextTokenizer.from_json(_read_text(path))
        except TokenizerError as err:
            log.warning("training the tokenizer again: the cached one is unusable (%s)", err)
    tokenizer = TextTokenizer.train(kind, texts(), vocab_size)
    try:
        tokenizer.save(path)
    except OSError as err:
        log.warning("could not store the trained tokenizer at %s (%s); it will be trained again next time",
                    path, err.strerror or err)
    return tokenizer


