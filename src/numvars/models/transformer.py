"""A small causal pre-LayerNorm Transformer with RoPE or no positional encoding (NPE).

It names its intervention sites (the named-site protocol of `numvars.align.sites`): `resid.L` is
the residual stream after L blocks (resid.0 = embeddings; the paper intervenes at resid.1 of 2
layers). `activations(tokens, site)` reads a site and `logits_from(site, acts, positions)` runs
everything after it, which is all an intervention needs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .head import Dropout, MLPHead


def rope(x: Tensor) -> Tensor:
    """Rotary position embedding over the last dim of x (B, H, L, Dh)."""
    L, dh = x.shape[-2], x.shape[-1]
    freqs = 10000.0 ** (-torch.arange(0, dh, 2, device=x.device, dtype=x.dtype) / dh)   # (Dh/2,)
    angles = torch.arange(L, device=x.device, dtype=x.dtype)[:, None] * freqs[None, :]  # (L, Dh/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.use_rope, self.p = cfg.n_heads, cfg.pos == "rope", cfg.layer_dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        # an attention intervention: edit(q, k, v) -> (B, H, L, Dh) replaces the attention computation
        # (used by numvars.align.attention; None in normal use)
        self.edit = None

    def forward(self, x: Tensor, return_weights: bool = False):
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, H, L, Dh)
        if self.use_rope:
            q, k = rope(q), rope(k)
        if self.edit is not None:
            y, weights = self.edit(q, k, v), None
        elif return_weights:   # the plain path: what the fused kernel computes, with the weights kept
            scores = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
            causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)     # (B, H, L, L)
            y = weights @ v
        else:
            p = self.p if self.training else 0.0
            y, weights = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p), None
        y = self.proj(y.transpose(1, 2).reshape(B, L, C))
        return (y, weights) if return_weights else y


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        layers = [nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU()]
        layers += [Dropout(cfg.layer_dropout)] if cfg.layer_dropout else []
        self.mlp = nn.Sequential(*layers, nn.Linear(4 * cfg.d_model, cfg.d_model))
        self.drop = Dropout(cfg.layer_dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class TransformerLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = MLPHead(cfg.d_model, cfg.d_model, cfg.vocab_size, cfg.head_dropout)

    # --- the named-site protocol ---------------------------------------------------------------
    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(f"resid.{layer}" for layer in range(self.cfg.n_layers + 1))

    @property
    def default_site(self) -> str:
        return f"resid.{min(1, self.cfg.n_layers)}"

    def activations(self, tokens: Tensor, site: str) -> Tensor:
        """The residual stream at `site` for every position: (B, L, d)."""
        return self.residual(tokens, self._layer(site))

    def logits_from(self, site: str, acts: Tensor, positions: Tensor) -> Tensor:
        """Logits (B, P, V) at positions (B, P), from the whole stream at `site` (B, L, d)."""
        final = self.final_stream(acts, self._layer(site))                          # (B, L, d)
        # the head only where predictions are read
        return self.unembed(final.gather(1, positions.unsqueeze(-1).expand(-1, -1, final.shape[-1])))

    def _layer(self, site: str) -> int:
        return self.site_names.index(site)

    # --- plain use -----------------------------------------------------------------------------
    def residual(self, tokens: Tensor, layer: int) -> Tensor:
        """The residual stream after `layer` blocks: (B, L, d)."""
        x = self.embed(tokens)
        for block in self.blocks[:layer]:
            x = block(x)
        return x

    def final_stream(self, resid: Tensor, layer: int) -> Tensor:
        """The residual stream after the last block, from the one after `layer` blocks."""
        for block in self.blocks[layer:]:
            resid = block(resid)
        return resid

    def unembed(self, resid: Tensor) -> Tensor:
        """Logits from the final stream: final norm, then the MLP head."""
        return self.head(self.ln_f(resid))

    def forward_from(self, resid: Tensor, layer: int) -> Tensor:
        """Logits (B, L, V) from the residual stream after `layer` blocks."""
        return self.unembed(self.final_stream(resid, layer))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.forward_from(self.embed(tokens), 0)

    @torch.no_grad()
    def attention_weights(self, tokens: Tensor) -> Tensor:
        """Attention weights of every layer: (n_layers, B, H, L, L)."""
        x, out = self.embed(tokens), []
        for block in self.blocks:
            y, w = block.attn(block.ln1(x), return_weights=True)
            x = x + y
            x = x + block.mlp(block.ln2(x))
            out.append(w)
        return torch.stack(out)
