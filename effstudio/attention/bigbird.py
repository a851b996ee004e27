"""BigBird attention: block-sparse with window, random and global blocks.

The sequence is cut into blocks of ``block_size`` tokens. Query block I sees:
the ``window_blocks`` blocks centred on it, ``random_blocks`` other blocks
drawn at random, and the first ``global_blocks`` blocks; the global blocks
see every token. Random blocks are fixed per layer: each layer draws a seed
when it is built (saved with its weights) and the choice for a given number
of blocks follows from it. They never repeat a window or global block, and a
global block inside the window is taken from the window only, so every key
counts once in the softmax.

The random choice depends on the number of blocks, which an exported graph
only knows at run time; so the export path carries every choice the model can
make, one row of ``random_table`` per number of blocks up to the model's
maximum length, and picks its row with tensor operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from effstudio.attention import block_sparse as bs
from effstudio.attention.base import AttentionOutput, AttentionSpec
from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry

EXPORT_TABLE_LIMIT = 1 << 24  # entries of the export's random-block table (see random_table)


@dataclass(frozen=True)
class BigBirdAttentionConfig:
    block_size: int = param(64, min=1, help="Tokens per block")
    window_blocks: int = param(3, min=1, help="Sliding blocks around each query block (odd: centred)")
    random_blocks: int = param(3, min=0, help="Random key blocks per query block, fixed per layer")
    global_blocks: int = param(
        2, min=0, help="Leading blocks that see and are seen by every token (they hold the classification token)"
    )

    def check(self) -> None:
        if self.window_blocks % 2 == 0:
            raise ConfigError("window_blocks", f"must be odd so the window is centred, got {self.window_blocks}")


class BigBirdAttention(bs.BlockSparseAttention):
    def __init__(self, config: BigBirdAttentionConfig, spec: AttentionSpec):
        super().__init__(spec)
        validate(config)
        if config.block_size * config.window_blocks >= spec.max_length:
            raise ConfigError(
                "block_size",
                f"{config.window_blocks} window blocks of {config.block_size} tokens cover every sequence "
                f"of up to {spec.max_length} tokens: that is full attention; use smaller blocks or 'sdpa'",
            )
        self.block = config.block_size
        self.radius = config.window_blocks // 2
        self.random_blocks = config.random_blocks
        self.global_blocks = config.global_blocks
        # drawn from the global RNG so a seeded run is reproducible; saved with the weights
        self.register_buffer("random_seed", torch.randint(0, 2**31 - 1, ()))
        self._random_cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def random_block_index(self, n_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query block's random key blocks (nb, R) and which of them exist (nb, R).

        Candidates exclude the window, the global blocks and (causal) later blocks;
        a query block with fewer candidates than R gets them all.
        """
        seed = int(self.random_seed) * 1_000_003 + n_blocks * 2 + int(self.causal)
        key = (seed, n_blocks)  # the seed changes when saved weights are loaded
        if key not in self._random_cache:
            generator = torch.Generator().manual_seed(seed)
            index = torch.zeros(n_blocks, self.random_blocks, dtype=torch.long)
            valid = torch.zeros(n_blocks, self.random_blocks, dtype=torch.bool)
            for row in range(self.global_blocks, n_blocks):
                stop = row - self.radius if self.causal else n_blocks
                candidates = [
                    b for b in range(self.global_blocks, stop) if abs(b - row) > self.radius
                ]
                order = torch.randperm(len(candidates), generator=generator)[: self.random_blocks]
                chosen = torch.tensor(candidates, dtype=torch.long)[order].sort().values
                index[row, : len(chosen)] = chosen
                valid[row, : len(chosen)] = True
            self._random_cache[key] = (index, valid)
        return self._random_cache[key]

    def allowed_pattern(self, n: int) -> torch.Tensor:
        """The dense (N, N) pattern this kind computes, for tests and documentation."""
        n_blocks = -(-n // self.block)
        index, valid = self.random_block_index(n_blocks)
        blocks = torch.zeros(n_blocks, n_blocks, dtype=torch.bool)  # (nb, nb) block-level pattern
        rows = torch.arange(n_blocks)[:, None].expand_as(index)
        blocks[rows[valid], index[valid]] = True
        gap = torch.arange(n_blocks)[:, None] - torch.arange(n_blocks)[None, :]
        blocks |= gap.abs() <= self.radius
        blocks[: self.global_blocks, :] = True
        blocks[:, : self.global_blocks] = True
        token_block = torch.arange(n) // self.block
        ok = blocks[token_block[:, None], token_block[None, :]]  # (N, N)
        return ok & torch.ones(n, n, dtype=torch.bool).tril() if self.causal else ok

    def prepare_export(self) -> None:
        self.random_table()

    def random_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every sequence length's random blocks: (T, T, R) index and valid, T = blocks of max_length.

        Row t - 1 is ``random_block_index(t)`` padded with invalid entries. Export only.
        """
        key = (int(self.random_seed), -1)  # beside random_block_index's entries, which have n_blocks >= 1
        if key in self._random_cache:
            return self._random_cache[key]
        most = -(-self.spec.max_length // self.block)
        if most * most * max(self.random_blocks, 1) > EXPORT_TABLE_LIMIT:
            raise ConfigError(
                "block_size",
                f"exporting BigBird with blocks of {self.block} tokens for sequences of up to "
                f"{self.spec.max_length} needs a table of {most}^2 x {self.random_blocks} random choices; "
                "use larger blocks",
            )
        index = torch.zeros(most, most, self.random_blocks, dtype=torch.long)
        valid = torch.zeros(most, most, self.random_blocks, dtype=torch.bool)
        for blocks in range(1, most + 1):
            index[blocks - 1, :blocks], valid[blocks - 1, :blocks] = self.random_block_index(blocks)
        self._random_cache[key] = (index, valid)
        return index, valid

    def export_pattern(self, n: int | torch.Tensor, device: torch.device) -> torch.Tensor:
        """``allowed_pattern(n)`` from tensor operations on a traced length n: (N, N) bool."""
        n = torch.as_tensor(n)
        index, valid = (t.to(device) for t in self.random_table())  # (T, T, R)
        n_blocks = (n + self.block - 1) // self.block
        row = (n_blocks - 1).reshape(1)
        index, valid = index.index_select(0, row)[0, :n_blocks], valid.index_select(0, row)[0, :n_blocks]
        block_ids = torch.arange(n_blocks, device=device)  # (nb,)
        chosen = (index[:, :, None] == block_ids) & valid[:, :, None]  # (nb, R, nb)
        gap = block_ids[:, None] - block_ids[None, :]  # (nb, nb)
        is_global = block_ids < self.global_blocks  # (nb,)
        blocks = chosen.any(dim=1) | (gap.abs() <= self.radius) | is_global[:, None] | is_global[None, :]
        positions = torch.arange(n, device=device)  # (N,)
        token_block = positions // self.block
        ok = blocks.index_select(0, token_block).index_select(1, token_block)  # (N, N)
        return ok & (positions[None, :] <= positions[:, None]) if self.causal else ok

    def blocked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                need_weights: bool) -> AttentionOutput:
        block, radius, device = self.block, self.radius, q.device
        x = bs.pad_inputs(q, k, v, key_mask, block)
        n_blocks = x.padded_length // block

        offsets = torch.arange(-radius, 1 if self.causal else radius + 1, device=device)
        window = torch.arange(n_blocks, device=device)[:, None] + offsets  # (nb, W)
        random, random_valid = (t.to(device) for t in self.random_block_index(n_blocks))  # (nb, R)
        index = torch.cat([window.clamp(0, n_blocks - 1), random], dim=1)  # (nb, W + R)
        valid = torch.cat([(window >= 0) & (window < n_blocks), random_valid], dim=1)
        n_global = min(self.global_blocks, n_blocks) * block
        glob = torch.arange(n_global, device=device)  # (G,)

        def parts(start: int, stop: int) -> list[bs.Part]:
            rows = slice(start // block, stop // block)
            blocks = bs.block_part(start, stop, block, index[rows], valid[rows])
            if not n_global:
                return [blocks]
            keep = lambda i, j: (i // block - j // block).abs() > radius  # noqa: E731
            return [blocks, bs.column_part(start, stop, glob, keep=keep)]

        return bs.attend_cropped(x, parts, block, self.causal, need_weights, glob)


ENTRY = Entry(
    "bigbird", "Block-sparse: window, random and global blocks (linear in length; causal or not)",
    BigBirdAttentionConfig, BigBirdAttention,
)
