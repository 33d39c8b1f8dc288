"""A small causal pre-LayerNorm Transformer with RoPE or no positional encoding (NPE).

One forward path (`TransformerLM.run`) serves every use: training and plain inference over whole sequences
(the fused attention kernel), the attention weights (`attention_weights`, the plain path the fused one must
equal), an attention edit at chosen layers (the attention test of `numvars.align.attention`), and a
*window*: a few positions recomputed from a given stream while every other position's keys and values come
from a cache (`kv_cache`). The window is what an intervention at one position needs: nothing before it
changes, so only the positions from it on are run again (and, for free-running generation, one new position
per step).

It names its intervention sites (the named-site protocol of `numvars.align.sites`): `resid.L` is the
residual stream after L blocks (resid.0 = embeddings; the paper intervenes at resid.1 of 2 layers).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .head import Dropout, MLPHead


def rope(x: Tensor, positions: Tensor | None = None) -> Tensor:
    """Rotary position embedding over the last dim of x (B, H, T, Dh); positions (B, T), default 0..T-1."""
    T, dh = x.shape[-2], x.shape[-1]
    freqs = 10000.0 ** (-torch.arange(0, dh, 2, device=x.device, dtype=x.dtype) / dh)          # (Dh/2,)
    if positions is None:
        angles = torch.arange(T, device=x.device, dtype=x.dtype)[:, None] * freqs[None, :]     # (T, Dh/2)
    else:
        angles = positions[:, None, :, None].to(x.dtype) * freqs                               # (B, 1, T, Dh/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.use_rope, self.p = cfg.n_heads, cfg.pos == "rope", cfg.layer_dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def heads(self, x: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v (B, H, T, Dh) of the normalised stream x (B, T, C), RoPE applied."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        if self.use_rope:
            q, k = rope(q, positions), rope(k, positions)
        return q, k, v

    def forward(self, x: Tensor, positions: Tensor | None = None, past: list | None = None, edit=None,
                weights: bool = False, store: bool = False):
        """x (B, T, C) at `positions` (B, T) (default 0..T-1). past: [K, V], the keys and values (B, H, L, Dh) of
        every position of the sequence, those at `positions` replaced here by x's own (a window); with `store`
        the list then holds the replaced ones (the cache moves on, as generation needs). edit(q, k, v) -> y
        replaces the attention (the attention test). Returns y (B, T, C), and the weights (B, H, T, L) when
        `weights`."""
        B, T, C = x.shape
        q, k, v = self.heads(x, positions)
        w = None
        if past is not None:                                  # a window: attend to the cache up to each position
            at = positions[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[-1])
            k, v = past[0].scatter(2, at, k), past[1].scatter(2, at, v)
            if store:
                past[0], past[1] = k, v
            allowed = torch.arange(k.shape[2], device=x.device) <= positions[:, None, :, None]   # (B, 1, T, L)
            w = ((q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
            y = w @ v
        elif edit is not None:
            y = edit(q, k, v)
        elif weights:          # the plain path: what the fused kernel computes, with the weights kept
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            w = ((q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5).masked_fill(~causal, float("-inf")).softmax(-1)
            y = w @ v
        else:
            p = self.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        y = self.proj(y.transpose(1, 2).reshape(B, T, C))
        return (y, w) if weights else y


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        layers = [nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU()]
        layers += [Dropout(cfg.layer_dropout)] if cfg.layer_dropout else []
        self.mlp = nn.Sequential(*layers, nn.Linear(4 * cfg.d_model, cfg.d_model))
        self.drop = Dropout(cfg.layer_dropout)

    def forward(self, x: Tensor, positions: Tensor | None = None, past=None, edit=None, weights: bool = False,
                store: bool = False):
        y = self.attn(self.ln1(x), positions, past, edit, weights, store)
        y, w = y if weights else (y, None)
        x = x + self.drop(y)
        x = x + self.drop(self.mlp(self.ln2(x)))
        return (x, w) if weights else x


class TransformerLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = MLPHead(cfg.d_model, cfg.d_model, cfg.vocab_size, cfg.head_dropout)

    # --- the one forward path ------------------------------------------------------------------------
    def run(self, x: Tensor, start: int = 0, stop: int | None = None, positions: Tensor | None = None,
            past: dict | None = None, edits: dict | None = None, weights: list | None = None,
            store: bool = False) -> Tensor:
        """The residual stream after blocks[start:stop] from x, the stream after `start` blocks (B, T, d).
        positions/past/store: a window (see CausalSelfAttention; past[layer] = [K, V], `kv_cache`); edits:
        layer -> attention edit; weights: a list that receives each block's attention weights."""
        for layer in range(start, len(self.blocks) if stop is None else stop):
            block = self.blocks[layer]
            kv = None if past is None else past[layer]
            edit = None if edits is None else edits.get(layer)
            if weights is not None:
                x, w = block(x, positions, kv, edit, weights=True)
                weights.append(w)
            else:
                x = block(x, positions, kv, edit, store=store)
        return x

    def unembed(self, resid: Tensor) -> Tensor:
        """Logits from the final stream: final norm, then the MLP head."""
        return self.head(self.ln_f(resid))

    def forward(self, tokens: Tensor, edits: dict | None = None) -> Tensor:
        return self.unembed(self.run(self.embed(tokens), edits=edits))

    @torch.no_grad()
    def attention_weights(self, tokens: Tensor) -> Tensor:
        """Attention weights of every layer: (n_layers, B, H, L, L)."""
        out: list[Tensor] = []
        self.run(self.embed(tokens), weights=out)
        return torch.stack(out)

    # --- the named-site protocol ---------------------------------------------------------------------
    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(f"resid.{layer}" for layer in range(self.cfg.n_layers + 1))

    @property
    def default_site(self) -> str:
        return f"resid.{min(1, self.cfg.n_layers)}"

    def _layer(self, site: str) -> int:
        return self.site_names.index(site)

    def activations(self, tokens: Tensor, site: str) -> Tensor:
        """The residual stream at `site` for every position: (B, L, d)."""
        return self.run(self.embed(tokens), stop=self._layer(site))

    def logits_from(self, site: str, acts: Tensor, positions: Tensor) -> Tensor:
        """Logits (B, P, V) at positions (B, P), from the whole stream at `site` (B, L, d)."""
        final = self.run(acts, start=self._layer(site))
        return self.unembed(final.gather(1, positions.unsqueeze(-1).expand(-1, -1, final.shape[-1])))

    @torch.no_grad()
    def kv_cache(self, x: Tensor, start: int = 0, stop: int | None = None) -> dict[int, list[Tensor]]:
        """layer -> [K, V] (B, H, L, Dh) of blocks[start:stop], from x, the whole stream after `start` blocks."""
        out = {}
        for layer in range(start, len(self.blocks) if stop is None else stop):
            block = self.blocks[layer]
            _, k, v = block.attn.heads(block.ln1(x))
            out[layer] = [k, v]
            x = block(x)
        return out

    def site_cache(self, site: str, acts: Tensor) -> dict[int, list[Tensor]]:
        """`kv_cache` of every block after `site`, from the whole stream there (B, L, d)."""
        return self.kv_cache(acts, self._layer(site))

    def logits_window(self, site: str, window: Tensor, positions: Tensor, past: dict, store: bool = False) -> Tensor:
        """Logits (B, T, V) at `positions` (B, T) when the stream at `site` there is `window` (B, T, d) and
        every other position is as in `past` (`site_cache` of the unchanged sequence): the positions before
        the window see nothing new, so only the window is run."""
        return self.unembed(self.run(window, self._layer(site), positions=positions, past=past, store=store))

    def token_cache(self, site: str, tokens: Tensor) -> dict[int, list[Tensor]]:
        """`kv_cache` of the blocks before `site`, from the tokens (B, L)."""
        return self.kv_cache(self.embed(tokens), 0, self._layer(site))

    def site_stream(self, tokens: Tensor, site: str, positions: Tensor, past: dict) -> Tensor:
        """The stream at `site` (B, T, d) of `tokens` (B, T) at `positions`, every earlier position as in
        `past` (the `kv_cache` of the blocks before the site, moved on as it goes): one step of generation."""
        return self.run(self.embed(tokens), 0, self._layer(site), positions=positions, past=past, store=True)
