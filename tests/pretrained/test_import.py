"""Hugging Face folders imported exactly: tiny random models of every supported architecture, saved with
transformers' own save_pretrained, imported, and compared with transformers on padded batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from effstudio.config import ConfigError
from effstudio.engine.build import task_of_checkpoint
from effstudio.engine.checkpoint import read_info
from effstudio.engine.loading import load_checkpoint
from effstudio.pretrained.check import TOLERANCE, compare, load_reference, sample_batch
from effstudio.pretrained.efficient import make_efficient
from effstudio.pretrained.importer import SUPPORTED, import_folder, save_imported

T = pytest.importorskip("transformers")

SMALL = dict(num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99,
             max_position_embeddings=64, num_labels=3)
IMAGE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=16,
             patch_size=4, num_labels=3)

# (case, config, model class, what the import keeps: "logits" when the reference's logits have a kept head)
CASES = {
    "bert-classify": (lambda: T.BertConfig(hidden_size=32, **SMALL), "BertForSequenceClassification", True),
    "bert-masked": (lambda: T.BertConfig(hidden_size=32, **SMALL), "BertForMaskedLM", True),
    "bert-base": (lambda: T.BertConfig(hidden_size=32, **SMALL), "BertModel", False),
    "minilm": (lambda: T.BertConfig(hidden_size=24, **{**SMALL, "num_hidden_layers": 3, "num_attention_heads": 6,
                                                       "intermediate_size": 48}),
               "BertForSequenceClassification", True),
    "roberta-classify": (lambda: T.RobertaConfig(hidden_size=32, **SMALL), "RobertaForSequenceClassification", True),
    "roberta-masked": (lambda: T.RobertaConfig(hidden_size=32, **SMALL), "RobertaForMaskedLM", True),
    "distilbert-classify": (lambda: T.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, vocab_size=99,
                                                       max_position_embeddings=64, num_labels=3),
                            "DistilBertForSequenceClassification", True),
    "distilbert-masked": (lambda: T.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, vocab_size=99,
                                                     max_position_embeddings=64), "DistilBertForMaskedLM", True),
    "electra-classify": (lambda: T.ElectraConfig(hidden_size=32, embedding_size=16, **SMALL),
                         "ElectraForSequenceClassification", True),
    "electra-discriminator": (lambda: T.ElectraConfig(hidden_size=32, embedding_size=16, **SMALL),
                              "ElectraForPreTraining", False),
    "albert-classify": (lambda: T.AlbertConfig(hidden_size=32, embedding_size=16, **SMALL),
                        "AlbertForSequenceClassification", True),
    "albert-masked": (lambda: T.AlbertConfig(hidden_size=32, embedding_size=16, **SMALL), "AlbertForMaskedLM", True),
    "gpt2-classify": (lambda: T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99, n_positions=64,
                                           num_labels=3, pad_token_id=0), "GPT2ForSequenceClassification", True),
    "gpt2-lm": (lambda: T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99, n_positions=64, pad_token_id=0),
                "GPT2LMHeadModel", True),
    "distilgpt2": (lambda: T.GPT2Config(n_embd=32, n_layer=1, n_head=4, n_inner=48, vocab_size=99, n_positions=64,
                                        pad_token_id=0), "GPT2LMHeadModel", True),
    "vit": (lambda: T.ViTConfig(**IMAGE), "ViTForImageClassification", True),
    "deit": (lambda: T.DeiTConfig(**IMAGE), "DeiTForImageClassification", True),
    "deit-teacher": (lambda: T.DeiTConfig(**IMAGE), "DeiTForImageClassificationWithTeacher", True),
}


def save_reference(folder: Path, case: str, *, safe: bool = True, **options) -> torch.nn.Module:
    make_config, class_name, _ = CASES[case]
    torch.manual_seed(0)
    model = getattr(T, class_name)(make_config()).eval()
    model.save_pretrained(folder, safe_serialization=safe, **options)
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    found = {}
    for case in CASES:
        save_reference(root / case, case)
        found[case] = root / case
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_every_architecture_matches_transformers_on_padded_batches(folders, case):
    imported = import_folder(folders[case])
    reference = load_reference(folders[case])
    differences = {d.output: d.max_abs for d in compare(imported, reference, batch=3, length=16)}
    expected = {"hidden", "logits"} if CASES[case][2] else {"hidden"}
    assert set(differences) == expected
    assert all(value <= TOLERANCE for value in differences.values()), differences
    assert not imported.model.training
    assert all(p.dtype == torch.float32 for p in imported.model.parameters())


def test_every_supported_architecture_is_covered():
    covered = {getattr(T, CASES[case][1]).config_class.model_type for case in CASES}
    assert covered == set(SUPPORTED)


def test_the_check_sees_a_changed_weight(folders):
    imported = import_folder(folders["bert-classify"])
    with torch.no_grad():
        imported.model.blocks[1].mlp[2].bias[0] += 0.01
    differences = compare(imported, load_reference(folders["bert-classify"]))
    assert not all(d.exact for d in differences)


def test_the_mapping_follows_the_architecture(folders):
    albert = import_folder(folders["albert-classify"])
    assert (albert.config.model_type, albert.config.model.halting, albert.config.model.max_steps) == (
        "universal", "off", 2)
    assert albert.config.model.embed_dim == 16 and len(albert.model.blocks) == 1
    gpt2 = import_folder(folders["gpt2-lm"])
    assert gpt2.model.causal and gpt2.config.model.pooling == "last" and "head" in gpt2.new_parts
    roberta = import_folder(folders["roberta-classify"])
    assert roberta.config.model.position_offset == 2 and roberta.config.task.max_length == 62
    assert roberta.model.positions.num_embeddings == 64
    deit = import_folder(folders["deit"])
    assert deit.config.model_type == "vit" and deit.config.model.distillation_token


def test_pickled_weights_are_read_through_the_scan(tmp_path):
    # transformers 5 writes safetensors whatever safe_serialization says: the older format is written here
    reference = save_reference(tmp_path / "bert", "bert-classify", safe=False)
    (tmp_path / "bert" / "model.safetensors").unlink(missing_ok=True)
    torch.save(reference.state_dict(), tmp_path / "bert" / "pytorch_model.bin")
    differences = compare(import_folder(tmp_path / "bert"), reference)
    assert all(d.exact for d in differences)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    save_reference(tmp_path / "bert", "bert-classify")
    (tmp_path / "bert" / "model.safetensors").unlink()
    torch.save({"weights": torch.zeros(2), "hook": print}, tmp_path / "bert" / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="pytorch_model.bin") as caught:
        import_folder(tmp_path / "bert")
    assert "print" in str(caught.value)


def test_a_weights_file_names_its_folder(folders):
    imported = import_folder(folders["vit"] / "model.safetensors")
    assert imported.architecture == "vit"


def test_sharded_checkpoints_are_read_and_a_missing_shard_is_named(tmp_path):
    reference = save_reference(tmp_path / "bert", "bert-classify", max_shard_size="20KB")
    index = json.loads((tmp_path / "bert" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert all(d.exact for d in compare(import_folder(tmp_path / "bert"), reference))
    (tmp_path / "bert" / shards[-1]).unlink()
    with pytest.raises(ConfigError, match=f"shard {shards[-1]} is missing"):
        import_folder(tmp_path / "bert")


def test_an_index_that_names_a_file_elsewhere_is_refused(tmp_path):
    save_reference(tmp_path / "bert", "bert-classify", max_shard_size="20KB")
    path = tmp_path / "bert" / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = "../elsewhere.safetensors"
    path.write_text(json.dumps(index))
    with pytest.raises(ConfigError, match="not a file name in this folder"):
        import_folder(tmp_path / "bert")


def edited_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_bad_folders_are_one_line(tmp_path):
    save_reference(tmp_path / "bert", "bert-classify")
    folder = tmp_path / "bert"
    edited_config(folder, model_type="t5")
    with pytest.raises(ConfigError, match="'t5' is not an architecture effstudio imports; it imports bert, "
                                          "roberta, distilbert, electra, albert, gpt2, vit, deit"):
        import_folder(folder)
    edited_config(folder, model_type="bert", intermediate_size=40)
    with pytest.raises(ConfigError, match=r"weights do not match config.json: "
                                          r"bert.encoder.layer.0.intermediate.dense.weight has shape \(37, 32\), "
                                          r"config.json implies \(40, 32\)"):
        import_folder(folder)
    edited_config(folder, intermediate_size=37, num_hidden_layers=3)
    with pytest.raises(ConfigError, match="tensor bert.encoder.layer.2.attention.self.query.weight is missing"):
        import_folder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ConfigError, match="no config.json here"):
        import_folder(folder)
    for error in (ConfigError,):
        with pytest.raises(error) as caught:
            import_folder(folder)
        assert "\n" not in str(caught.value)


def test_the_folder_tokenizer_travels_with_the_checkpoint(tmp_path, folders):
    folder = tmp_path / "bert"
    reference = save_reference(folder, "bert-classify")
    words = [f"w{i}" for i in range(99 - 5)]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    imported = import_folder(folder)
    assert imported.warnings == []
    assert imported.config.model.vocab_size == 99  # the tokenizer fits the embedding: nothing appended
    out = save_imported(imported, tmp_path / "out" / "bert.safetensors")
    assert (tmp_path / "out" / "bert.tokenizer.json").is_file()
    info = read_info(out)
    task = task_of_checkpoint(info)
    assert task.decode([2, 5, 6, 3]) == ["[CLS]", "w0", "w1", "[SEP]"]
    assert task.spec.class_names == ("LABEL_0", "LABEL_1", "LABEL_2")
    loaded = load_checkpoint(out)
    ids = torch.tensor([[2, 5, 9, 3, 0, 0], [2, 7, 8, 11, 12, 3]])
    mask = ids != 0
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask.long()).logits
        assert torch.allclose(loaded.model(ids, mask).logits, theirs, atol=TOLERANCE)


def test_a_folder_without_a_tokenizer_is_imported_with_ids_and_a_warning(folders, tmp_path):
    imported = import_folder(folders["roberta-classify"])
    assert len(imported.warnings) == 1 and "ids instead of text" in imported.warnings[0]
    out = save_imported(imported, tmp_path / "roberta.safetensors")
    task = task_of_checkpoint(read_info(out))
    assert task.decode([5, 17]) == ["5", "17"]


def test_attention_kinds_stay_swappable(folders):
    imported = import_folder(folders["bert-classify"])
    full = make_efficient(imported.model, imported.config, attention="full").model
    ids = torch.randint(2, 99, (2, 12))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 8:] = False
    with torch.no_grad():
        assert torch.allclose(full(ids, mask).logits, imported.model(ids, mask).logits, atol=1e-5)


def test_missing_transformers_is_one_line(folders, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    with pytest.raises(ConfigError, match="not installed"):
        load_reference(folders["bert-classify"])


def write_documents(path: Path, labels: list[str]) -> None:
    rows = ["text,label"] + [f"w{i} w{i + 1} w{(i * 7) % 90} w{(i * 3) % 90},{labels[i % len(labels)]}"
                             for i in range(60)]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def bert_with_vocab(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vocab") / "bert"
    make_config, class_name, _ = CASES["bert-classify"]
    torch.manual_seed(0)
    config = make_config()
    config.id2label = {0: "neg", 1: "neutral", 2: "pos"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    getattr(T, class_name)(config).eval().save_pretrained(folder)
    words = [f"w{i}" for i in range(99 - 5)]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return folder


def test_the_users_data_keeps_a_classifier_of_its_labels_in_its_order(bert_with_vocab, tmp_path):
    data = tmp_path / "docs.csv"
    write_documents(data, ["pos", "neg", "neutral"])
    plain = import_folder(bert_with_vocab)
    imported = import_folder(bert_with_vocab, task_settings={"task.path": str(data)})
    assert imported.config.task.path == str(data) and imported.new_parts == []
    ids = torch.tensor([[2, 9, 10, 3]])
    with torch.no_grad():  # the data's labels sort as neg, neutral, pos: the checkpoint's order already
        assert torch.equal(imported.model(ids).logits, plain.model(ids).logits)
    out = save_imported(imported, tmp_path / "bert.safetensors")  # beside its data: the header may name it
    task = task_of_checkpoint(read_info(out))
    assert task.spec.class_names == ("neg", "neutral", "pos") and len(task.split("train")) > 0


def test_data_of_other_labels_gets_a_new_head_sized_by_them(bert_with_vocab, tmp_path):
    data = tmp_path / "docs.csv"
    write_documents(data, ["spam", "ham"])
    imported = import_folder(bert_with_vocab, task_settings={"task.path": str(data)})
    assert imported.new_parts == ["head"] and imported.model.head.out_features == 2
    assert any("a new head for 2 labels" in note for note in imported.notes)
    with pytest.raises(ConfigError, match="fixed by the pretrained model"):
        import_folder(bert_with_vocab, task_settings={"task.max_length": 128})


@pytest.mark.parametrize("case", ["bert-masked", "albert-classify", "gpt2-lm", "deit-teacher"])
def test_a_saved_import_loads_as_it_was(folders, tmp_path, case):
    imported = import_folder(folders[case])
    loaded = load_checkpoint(save_imported(imported, tmp_path / f"{case}.safetensors")).model
    reference = load_reference(folders[case])
    _, (inputs, mask) = sample_batch(imported, reference)
    with torch.no_grad():
        assert torch.equal(loaded(inputs, mask).logits, imported.model(inputs, mask).logits)
        if imported.config.task_name == "textclass" and imported.config.model.token_head != "none":
            assert torch.equal(loaded.token_logits(inputs, mask), imported.model.token_logits(inputs, mask))


def test_a_byte_level_tokenizer_json_is_the_tasks_tokenizer(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    texts = ["the lighthouse keeper counted ships", "ships passed the lighthouse at night"] * 20
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    folder = tmp_path / "roberta"
    torch.manual_seed(0)
    config = T.RobertaConfig(hidden_size=32, **{**SMALL, "vocab_size": tokenizer.get_vocab_size()})
    reference = T.RobertaForSequenceClassification(config).eval()
    reference.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    imported = import_folder(folder)
    assert imported.warnings == [] and imported.config.model.vocab_size == tokenizer.get_vocab_size()
    assert all(d.exact for d in compare(imported, reference))
    task = task_of_checkpoint(read_info(save_imported(imported, tmp_path / "roberta.safetensors")))
    ids = tokenizer.encode("the lighthouse").ids
    assert "".join(task.decode(ids)).replace("\u2581", " ") == "the lighthouse"
    assert (task.spec.pad_id, task.spec.vocab[0], task.spec.vocab[2]) == (1, "<s>", "</s>")
