"""A block graph from tensor names alone, for files whose model effstudio cannot rebuild.

A Hugging Face folder, a plain safetensors or PyTorch file names its tensors
by module path (``bert.encoder.layer.3.attention.self.query.weight``). The
first numbered path part marks a stack of blocks (``bert.encoder.layer``, block
3); other tensors are grouped by the module they belong to beside the stacks
(``bert.embeddings``, ``bert.pooler``, ``classifier``). Groups that look like inputs
(embeddings, patch projections, position tables) feed the first block, the
stacks follow in order, the rest (final norms, pooler, head) comes after.
Nothing says how these modules are really wired: the note on the graph says so.
"""

from __future__ import annotations

import re

from effstudio.inspect.graph import GraphError, GraphNode, ModelGraph, check_size
from effstudio.inspect.tensors import Inspected

_INPUT_WORDS = re.compile(r"emb|wte|wpe|patch|cls_token|position|shared")


def _natural(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _stack(name: str) -> tuple[str, str] | None:
    """``a.layer.3.q.weight`` -> (``a.layer.3``, ``a.layer``): the block and its stack; None outside stacks."""
    parts = name.split(".")
    for index, part in enumerate(parts[:-1]):
        if part.isdigit() and index > 0:
            return ".".join(parts[:index + 1]), ".".join(parts[:index])
    return None


def _root(stack: str, loose: list[str]) -> str:
    """The module that holds the first stack beside other modules: ``transformer`` for ``transformer.h``
    (beside ``transformer.wte``), ``bert`` for ``bert.encoder.layer`` (``bert.encoder`` holds only the stack)."""
    parts = stack.split(".")
    for length in range(len(parts) - 1, 0, -1):
        root = ".".join(parts[:length]) + "."
        if any(name.startswith(root) for name in loose):
            return root
    return ""


def _block_settings(config: dict) -> list[str]:
    """What a Hugging Face style config.json says of every block: heads, feed-forward width, experts."""
    def first(*keys: str) -> int | None:
        values = [config.get(key) for key in keys]
        return next((v for v in values if isinstance(v, int) and not isinstance(v, bool)), None)

    settings = []
    heads = first("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
    if heads:
        settings.append(f"{heads} heads (config.json)")
    width = first("intermediate_size", "n_inner", "ffn_dim", "encoder_ffn_dim", "d_ff")
    experts = first("num_local_experts", "num_experts", "n_routed_experts")
    if experts:
        settings.append(f"{experts} experts" + (f" × {width}" if width else ""))
    elif width:
        settings.append(f"feed-forward {width}")
    return settings


def name_graph(inspected: Inspected, reason: str) -> ModelGraph:
    """The grouped graph; ``reason`` (why the model itself was not used) becomes its first note."""
    placed = {t.name: _stack(t.name) for t in inspected.tensors}
    stacks = list(dict.fromkeys(found[1] for found in sorted(
        (f for f in placed.values() if f is not None), key=lambda f: _natural(f[0]))))
    if not stacks:
        raise GraphError(f"{inspected.path.name} holds tensors only ({inspected.format}), no numbered blocks to "
                         "draw; a graph is drawn for ONNX files (operators), effstudio checkpoints and files of "
                         "numbered layers (blocks)")
    loose = [name for name, found in placed.items() if found is None]
    root = _root(stacks[0], loose)
    groups: dict[str, list[str]] = {}
    stack_of: dict[str, str | None] = {}
    for name, found in placed.items():
        if found is None:  # a module beside the stacks: named by its first part below the root
            depth = root.count(".") + 1 if name.startswith(root) else 1
            group, stack = ".".join(name.split(".")[:depth]), None
        else:
            group, stack = found
        groups.setdefault(group, []).append(name)
        stack_of[group] = stack
    check_size(len(groups), "modules")
    sizes = {t.name: t.numel for t in inspected.tensors}
    ordered = sorted(groups, key=_natural)
    inputs = [g for g in ordered if stack_of[g] is None and _INPUT_WORDS.search(g.lower())]
    # after the stacks: the root's own modules (final norm), then the ones outside it (a task head)
    rest = sorted((g for g in ordered if stack_of[g] is None and g not in inputs),
                  key=lambda g: not g.startswith(root))
    graph = ModelGraph("blocks from tensor names",
                       notes=[f"grouped from the tensor names: {reason}; the edges follow the names' order"])

    def add(group: str, kind: str) -> int:
        params = sum(sizes[name] for name in groups[group])
        return graph.add(GraphNode(group, kind, [f"{len(groups[group])} tensors, {params:,} parameters"],
                                   groups[group]))

    previous = [add(group, "Embedding") for group in inputs]
    settings = _block_settings(inspected.config or {})
    for stack in stacks:
        for group in (g for g in ordered if stack_of[g] == stack):
            index = add(group, "Block")
            graph.nodes[index].details += settings
            for before in previous:
                graph.connect(before, index, "hidden")
            previous = [index]
    for group in rest:
        index = add(group, "Module")
        for before in previous:
            graph.connect(before, index, "hidden")
        previous = [index]
    return graph
