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
    except (CheckpointError, ConfigError) as err:
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


def block_graph(inspected: Inspected) -> ModelGraph:
    try:
        model, config, spec = _built(inspected)
    except GraphError as err:
        return name_graph(inspected, str(err))
    readable = {tensor.name for tensor in inspected.tensors}
    graph = ModelGraph(f"effstudio {config.model_type} blocks")
    # token models read max_length positions; a ViT one per patch, plus its class token
    positions = spec.max_length if not spec.is_image else getattr(model, "grid", 0) ** 2 + 1
    tokens = f"batch×{positions}" if not spec.is_image else shape_text(("batch", *spec.image_shape))
    source = graph.add(GraphNode("inputs", "Input", [("images " if spec.is_image else "token ids ") + tokens]))

    canonical = {id(p): n for n, p in model.named_parameters()}  # a tied weight is stored once, by this name

    def tensors_of(prefix: str, module: nn.Module | nn.Parameter) -> list[str]:
        if isinstance(module, nn.Parameter):
            names = [prefix]
        else:
            names = [canonical.get(id(p), f"{prefix}.{n}") for n, p in module.named_parameters(remove_duplicate=False)]
        return [n for n in dict.fromkeys(names) if n in readable]

    def sized(width: int | None) -> str:
        return f"batch×{positions}×{width}" if width else ""

    embeddings: list[int] = []
    stacks: list[tuple[str, list[int]]] = []
    after: dict[str, list[tuple[str, nn.Module]]] = {}
    parts: list[tuple[str, nn.Module | nn.Parameter]] = [
        *((n, p) for n, p in model.named_parameters(recurse=False)), *model.named_children()]
    for name, part in parts:
        if isinstance(part, nn.Module) and not any(True for _ in part.parameters()):
            continue  # dropout, activations: nothing to show
        if isinstance(part, nn.ModuleList):
            stacks.append((name, []))
            continue
        if _is_embedding(name, part):
            shape = shape_text(tuple(part.shape)) if isinstance(part, nn.Parameter) else (
                f"{part.num_embeddings}×{part.embedding_dim}" if isinstance(part, nn.Embedding) else "")
            kind = "Parameter" if isinstance(part, nn.Parameter) else type(part).__name__
            index = graph.add(GraphNode(name, kind, [shape] if shape else [], tensors_of(name, part)))
            if kind != "Parameter":
                graph.connect(source, index, "inputs", tokens)
            embeddings.append(index)
            continue
        owner = next((stack for stack in reversed([s for s, _ in stacks]) if _prefix(stack) == _prefix(name)), None)
        after.setdefault(owner or "", []).append((name, part))
    check_size(len(graph.nodes) + sum(len(getattr(model, s)) for s, _ in stacks), "blocks and layers")

    first_kind = None
    previous: list[int] = embeddings or [source]
    width = next((_width(m) for _, m in parts if isinstance(m, nn.Module) and _width(m)), None)
    for stack_name, indices in stacks:
        blocks = getattr(model, stack_name)
        attention_class = type(getattr(blocks[0], "attention", None)) if len(blocks) else None
        if first_kind is None:
            first_kind = attention_class
        kind = config.attention_kind if attention_class is first_kind else None
        kind = kind or _kind_words(attention_class.__name__)  # a model with an attention of its own (XL)
        stack_input = previous
        for number, block in enumerate(blocks):
            name = f"{stack_name}.{number}"
            details = _block_details(block, kind or "?")
            steps = getattr(config.model, "max_steps", None)
            if len(blocks) == 1 and steps:  # one block applied again and again (Universal Transformer)
                details.append(f"applied up to {steps} times")
            index = graph.add(GraphNode(name, "Block", details, tensors_of(name, block)))
            crossing = getattr(block, "cross", None) is not None and stack_input is not (embeddings or [source])
            for before in (embeddings or [source]) if crossing and number == 0 else previous:
                graph.connect(before, index, "hidden", sized(width))
            if crossing:  # a decoder block also reads what the encoder stack made of the source
                for memory in stack_input:
                    graph.connect(memory, index, "encoder output", sized(width))
            previous = [index]
            indices.append(index)
        for name, part in after.pop(stack_name, []):
            previous = [_follow(graph, previous, name, part, tensors_of(name, part), sized(width))]
    # the head last: modules registered after it (a halting unit) work beside the blocks, not on the logits
    for name, part in sorted(after.pop("", []), key=lambda item: item[0] == "head"):
        label = sized(width)
        if name == "head":
            label = f"batch×{width}" if spec.objective == "classify" else sized(width)
        previous = [_follow(graph, previous, name, part, tensors_of(name, part), label)]
        width = _width(part) or width
    out_shape = f"batch×{spec.num_classes}" if spec.objective == "classify" else sized(width)
    output = graph.add(GraphNode("logits", "Output", [out_shape]))
    for before in previous:
        graph.connect(before, output, "logits", out_shape)
    if inspected.metadata.get("effstudio.structure"):
        graph.notes.append("structurally pruned: each block shows the heads and feed-forward width it kept")
    return graph


def _follow(graph: ModelGraph, previous: list[int], name: str, part: nn.Module, tensors: list[str],
            label: str) -> int:
    details = []
    if isinstance(part, nn.Linear):
        details.append(f"{part.in_features} → {part.out_features}")
    elif isinstance(part, nn.LayerNorm):
        details.append(f"width {part.normalized_shape[-1]}")
    details += [f"shares {tensor}" for tensor in tensors if not tensor.startswith(f"{name}.")]  # tied weights
    index = graph.add(GraphNode(name, type(part).__name__, details, tensors))
    for before in previous:
        graph.connect(before, index, "hidden", label)
    return index
