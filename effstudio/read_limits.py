"""How much of a file the readers will read, inflate or walk: every limit in one place, with its reason.

A file is data a stranger may have made. Each reader compares what a file
declares (a header length, a zip member's inflated size, a tensor's shape over
its storage) with these limits *before* reading, and streams with the same cap
where the declaration cannot be trusted, so a small hostile file cannot make a
reader run for hours or fill the memory. A refusal names the limit it hit.
"""

from __future__ import annotations

MiB = 1 << 20
GiB = 1 << 30

# JSON and TOML nesting: run configs, plans, events and safetensors headers nest 3 levels; 64 leaves room and
# stays far below the depth where the parsers' recursion fails (the safetensors library's stops at 128)
MAX_DEPTH = 64

# safetensors: the reference library refuses larger headers
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000

# a checkpoint's pickle holds names and shapes, not tensor data: ~100 bytes per tensor, so 32 MiB is ~300,000
# tensors. The opcode scan reads ~3 MB/s (about 10 s here); a 1 GiB pickle would keep it busy for 6 minutes
MAX_PICKLE_BYTES = 32 * MiB

# a compressed .npz array is inflated into memory to read its statistics
MAX_INFLATED_BYTES = 1 * GiB
# deflate reaches ~1000:1 on constant data; real weights compress less than 2:1. A small all-zero array may
# compress far better than this, so the ratio is only checked for members above RATIO_CHECKED_ABOVE
MAX_INFLATE_RATIO = 100
RATIO_CHECKED_ABOVE = 64 * MiB

# a PyTorch tensor may repeat its storage (stride 0, overlapping strides: torch.expand). Its statistics walk every
# element of the view; 2**27 take ~0.5 s, the 10**12 of a stride-0 view over one float would take hours. The
# limit is for all such views of a file together
MAX_REPEATED_VIEW_ELEMENTS = 1 << 27

# tensors in one file (a safetensors header, the members of an .npz or a PyTorch zip): the largest real models
# keep a few thousand per file, 90,000 over all their shards; each costs ~50 us to check and show, so a 60 MB header
# of 10**6 empty tensors would keep every reader busy for a minute
MAX_TENSORS = 200_000

# JSON beside or inside a model (config.json, a shard index, ONNX metadata): kilobytes in real files
MAX_JSON_BYTES = 10 * MiB

# a run config or plan (TOML, or JSON in a checkpoint's header) is a few kB; one line of an events.jsonl log
# is one event
MAX_DOCUMENT_BYTES = 1 * MiB
MAX_LINE_BYTES = 1 * MiB

# a charlm text is held in memory as characters and as an id per character (8 bytes each): enwik8, the classic
# character-level benchmark, is 100 MB. A device (/dev/zero) or a pipe never ends; neither is read at all
MAX_TEXT_BYTES = 128 * MiB

# an image folder is decoded into memory whole (each image as channels x size x size float32): 200,000 images,
# the most the digits task makes; the folder is counted while it is listed, so a million files stop early
MAX_IMAGE_FILES = 200_000
MAX_DECODED_IMAGE_BYTES = 8 * GiB

# a text-classification table (CSV, TSV, JSON Lines) is streamed in chunks, never held whole: the limits bound
# the work and the disk cache of its encoded splits. The format, delimiter and header are read from a head of
# TABLE_HEAD_BYTES; one field (a document) or one JSON line holds at most MAX_FIELD_BYTES (a book is ~1 MB)
TABLE_HEAD_BYTES = 64 * 1024
MAX_TABLE_BYTES = 8 * GiB
MAX_TABLE_ROWS = 20_000_000
MAX_FIELD_BYTES = 16 * MiB
# a folder of .txt files, one sub-folder per class: counted while listed, so a folder of millions stops early
MAX_TEXT_FILES = 1_000_000

# a file a task keeps beside each checkpoint (a tokenizer.json: a 250,000-token vocabulary is ~20 MB)
MAX_TASK_FILE_BYTES = 256 * MiB  # the largest tokenizer (MAX_TOKENIZER_BYTES) fits

# a tokenizer file (tokenizer.json, vocab.txt, vocab.json, merges.txt) is parsed whole: the largest real ones, for
# multilingual vocabularies of 250,000 pieces, are ~35 MB
MAX_TOKENIZER_BYTES = 64 * MiB

# a Hugging Face checkpoint split into shards (model-00001-of-00042.safetensors): the largest published models
# have a few hundred; more is a broken or hostile index
MAX_SHARDS = 1000
