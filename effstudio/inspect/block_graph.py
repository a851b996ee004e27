"""An effstudio checkpoint's model as a graph of blocks: inputs -> embeddings -> stacks of blocks -> head.

The model is the one the checkpoint's header describes, built as loading
builds it (its config, the per-block widths of a pruned model from
``effstudio.structure``) but on PyTorch's ``meta`` device: shapes only, no
weights read or allocated. Its module tree gives the boxes:

- embeddings (token, position, patch tables and the model's own vectors) feed the first block;
- each ``nn.ModuleList`` of blocks is a stack, one box per block with its
  attention kind, heads and feed-forward part (dense width, or experts);
  a block with cross-attention (a decoder) also reads the previous stack's output;
- the rest (norms, pools, head) follows the stack whose name it shares
  (``token_norm`` after ``token_blocks``), else the last stack.

Edges carry the shape of what flows: (batch, positions, width).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
from torch import nn

from effstudio.config import ConfigError
from effstudio.engine.build import model_of_checkpoint, task_of_checkpoint
from effstudio.engine.checkpoint import CheckpointError, read_info
from effstudio.inspect.graph import GraphError, GraphNode, ModelGraph, check_size, shape_text
from effstudio.inspect.name_graph import name_graph
from effstudio.models.moe import MoEFeedForward
from effstudio.models.structure import ff_width

if TYPE_CHECKING:
    from effstudio.engine.run_config import RunConfig
    from effstudio.inspect.tensors import Inspected
    from effstudio.tasks.base import TaskSpec


def _built(inspected: Inspected) -> tuple[nn.Module, RunConfig, TaskSpec]:
    """The checkpoint's model on the meta device; GraphError saying why when it cannot be rebuilt (a plugin's
    model type that is not installed, a task whose data the header names but this machine lacks)."""
    path = inspected.files[0] if inspected.files else inspected.path
    try:
        info = read_info(path)
        spec = task_of_checkpoint(info).spec
        with torch.device("meta"):  # shapes only: nothing allocated, nothing read
            model = model_of_checkpoint(info, spec)
    except (CheckpointError, ConfigError, RuntimeError, NotImplementedError) as err:  # meta: a value read at build
        raise GraphError(f"the model of {path.name} cannot be rebuilt to draw its blocks: {err}") from None
    return model, info.config, spec


def _kind_words(name: str) -> str:
    """``BlockSparseAttention`` -> ``block sparse``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name.removesuffix("Attention")).lower()
    return words or "attention"


def _block_details(block: nn.Module, attention_kind: str) -> list[str]:
    details = [f"{attention_kind} attention"]
    heads = getattr(block, "heads", None) or getattr(getattr(block, "attention", None), "heads", None)
    if heads:
        details[0] += f", {heads} heads"
    if getattr(block, "cross", None) is not None:
        details.append("cross-attention to the encoder")
    mlp = getattr(block, "mlp", None)
    if isinstance(mlp, MoEFeedForward):
        details.append(f"{mlp.experts} experts × {mlp.hidden}, top-{mlp.top_k}")
    elif mlp is not None:
        try:
            details.append(f"feed-forward {ff_width(mlp)}")
        except (AttributeError, IndexError, TypeError):  # a block type of its own
            details.append("feed-forward")
    return details


def _width(module: nn.Module) -> int | None:
    """The width of what a module puts out, from its own sizes."""
    if isinstance(module, nn.Embedding):
        return module.embedding_dim
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    linears = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if linears:
        last = linears[-1]
        return last.out_features if isinstance(last, nn.Linear) else last.out_channels
    return None


def _is_embedding(name: str, module: nn.Module | nn.Parameter) -> bool:
    if isinstance(module, nn.Parameter):
        return True
    return isinstance(module, nn.Embedding) or "embed" in type(module).__name__.lower() or "patch" in name


def _prefix(name: str) -> str:
    return name.split("_", 1)[0] if "_" in name else name


class _Builder:
    """Fills a ModelGraph from the model's top-level parts, in the order the module docstring describes."""

    def __init__(self, model: nn.Module, config: RunConfig, spec: TaskSpec, readable: set[str]):
        self.model, self.config, self.spec, self.readable = model, config, spec, readable
        self.graph = ModelGraph(f"effstudio {config.model_type} blocks")
        self.canonical = {id(p): n for n, p in model.named_parameters()}  # a tied weight is stored once, by this name
        # token models read max_length positions; a ViT one per patch, plus its class token
        self.positions = spec.max_length if not spec.is_image else getattr(model, "grid", 0) ** 2 + 1
        self.width: int | None = None
        self.first_attention: type | None = None

    def tensors_of(self, prefix: str, part: nn.Module | nn.Parameter) -> list[str]:
        if isinstance(part, nn.Parameter):
            names = [prefix]
        else:
            names = [self.canonical.get(id(p), f"{prefix}.{n}") for n, p in part.named_parameters(remove_duplicate=False)]
        return [n for n in dict.fromkeys(names) if n in self.readable]

    def sized(self) -> str:
        return f"batch×{self.positions}×{self.width}" if self.width else ""

    def link(self, sources: list[int], target: int, value: str, shape: str) -> None:
        for source in sources:
            self.graph.connect(source, target, value, shape)

    def inputs(self, embeddings: list[tuple[str, nn.Module | nn.Parameter]]) -> list[int]:
        """The input box and the embeddings it feeds (a model's own vectors, such as a class token, feed on
        their own); returns what the first block reads."""
        spec = self.spec
        tokens = f"batch×{self.positions}" if not spec.is_image else shape_text(("batch", *spec.image_shape))
        source = self.graph.add(GraphNode("inputs", "Input", [("images " if spec.is_image else "token ids ") + tokens]))
        added = []
        for name, part in embeddings:
            if isinstance(part, nn.Parameter):
                node = GraphNode(name, "Parameter", [shape_text(tuple(part.shape))], self.tensors_of(name, part))
            else:
                size = [f"{part.num_embeddings}×{part.embedding_dim}"] if isinstance(part, nn.Embedding) else []
                node = GraphNode(name, type(part).__name__, size, self.tensors_of(name, part))
            added.append(self.graph.add(node))
            if not isinstance(part, nn.Parameter):
                self.graph.connect(source, added[-1], "inputs", tokens)
        return added or [source]

    def stack(self, name: str, blocks: nn.ModuleList, previous: list[int], embeddings: list[int]) -> list[int]:
        """One box per block, chained; a block with cross-attention reads the previous stack's output too."""
        attention = type(getattr(blocks[0], "attention", None))
        self.first_attention = self.first_attention or attention
        kind = self.config.attention_kind if attention is self.first_attention else None
        kind = kind or _kind_words(attention.__name__)  # a model with an attention of its own (XL)
        steps = getattr(self.config.model, "max_steps", None)
        memory = previous
        for number, block in enumerate(blocks):
            details = _block_details(block, kind)
            if len(blocks) == 1 and steps:  # one block applied again and again (Universal Transformer)
                details.append(f"applied up to {steps} times")
            index = self.graph.add(GraphNode(f"{name}.{number}", "Block", details,
                                             self.tensors_of(f"{name}.{number}", block)))
            crossing = getattr(block, "cross", None) is not None and memory is not embeddings
            self.link(embeddings if crossing and number == 0 else previous, index, "hidden", self.sized())
            if crossing:
                self.link(memory, index, "encoder output", self.sized())
            previous = [index]
        return previous

    def follow(self, previous: list[int], name: str, part: nn.Module) -> list[int]:
        """A norm, pool or head after the blocks; the head of a classifier reads one pooled vector."""
        pooled = name == "head" and self.spec.objective == "classify"
        shape = f"batch×{self.width}" if pooled else self.sized()
        details = []
        if isinstance(part, nn.Linear):
            details.append(f"{part.in_features} → {part.out_features}")
        elif isinstance(part, nn.LayerNorm):
            details.append(f"width {part.normalized_shape[-1]}")
        tensors = self.tensors_of(name, part)
        details += [f"shares {tensor}" for tensor in tensors if not tensor.startswith(f"{name}.")]  # tied weights
        index = self.graph.add(GraphNode(name, type(part).__name__, details, tensors))
        self.link(previous, index, "hidden", shape)
        return [index]

    def output(self, previous: list[int], width: int | None) -> None:
        self.width = width or self.width
        shape = f"batch×{self.spec.num_classes}" if self.spec.objective == "classify" else self.sized()
        self.link(previous, self.graph.add(GraphNode("logits", "Output", [shape])), "logits", shape)


def block_graph(inspected: Inspected) -> ModelGraph:
    try:
        model, config, spec = _built(inspected)
    except GraphError as err:
        return name_graph(inspected, str(err))
    parts: list[tuple[str, nn.Module | nn.Parameter]] = [
        *model.named_parameters(recurse=False),
        *((n, m) for n, m in model.named_children() if any(True for _ in m.parameters()))]  # no dropouts
    embeddings = [(n, p) for n, p in parts if not isinstance(p, nn.ModuleList) and _is_embedding(n, p)]
    stacks = [(n, m) for n, m in parts if isinstance(m, nn.ModuleList) and len(m)]
    embedded = {name for name, _ in embeddings}
    after: dict[str, list[tuple[str, nn.Module]]] = {}  # norms, pools, heads: after the stack of their name
    for name, part in parts:
        if name not in embedded and not isinstance(part, nn.ModuleList):
            owner = next((s for s, _ in stacks if _prefix(s) == _prefix(name)), "")
            after.setdefault(owner, []).append((name, part))
    check_size(1 + len(parts) + sum(len(m) for _, m in stacks), "blocks and layers")

    builder = _Builder(model, config, spec, {tensor.name for tensor in inspected.tensors})
    builder.width = next((_width(m) for _, m in parts if isinstance(m, nn.Module) and _width(m)), None)
    fed = builder.inputs(embeddings)
    previous = fed
    for name, blocks in stacks:
        previous = builder.stack(name, blocks, previous, fed)
        for follower, part in after.pop(name, []):
            previous = builder.follow(previous, follower, part)
    # the head last: modules registered after it (a halting unit) work beside the blocks, not on the logits
    rest = sorted(after.pop("", []), key=lambda item: item[0] == "head")
    for follower, part in rest:
        previous = builder.follow(previous, follower, part)
    builder.output(previous, _width(rest[-1][1]) if rest else None)
    if inspected.metadata.get("effstudio.structure"):
        builder.graph.notes.append("structurally pruned: each block shows the heads and feed-forward width it kept")
    return builder.graph
