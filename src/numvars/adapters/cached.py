"""Free running with the model's own key/value cache (Hugging Face causal LMs): after a swap at position t,
each generated token costs one single-token forward instead of a forward over the whole sequence.

The prefix (base up to t, then the continuation) is run once with `use_cache=True`; the keys and values of
positions before t do not depend on the swap, so every later step attends to those (a per-row attention
mask hides the prefix's positions from t on) and to the steps it generated itself. Step 0 re-feeds the
token at t with the site's output replaced by the intervened state (nnsight), so the layers above the site
store keys and values of the swapped stream; step j feeds the token the model (or the continuation) put at
t + j, at position t + j. The same tokens as recomputing the whole sequence per step (tested)."""
from __future__ import annotations

import inspect

import torch
from torch import Tensor

from .base import model_logits, with_first


def has_cache(model) -> bool:
    """A forward that takes and returns `past_key_values` (a Hugging Face causal LM)."""
    try:
        return "past_key_values" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def free_run_cached(adapter, site: str, prefix: Tensor, t: Tensor, state: Tensor, cont: Tensor,
                    scored: Tensor) -> Tensor:
    """(N, M) greedy task tokens after the swap of `state` (N, d) at position t of `prefix` (N, W); the model's
    own tokens fed back where `scored`, the continuation's elsewhere."""
    enc, lm = adapter.tokens.encode, adapter.model
    n, width = prefix.shape
    rows, ones = torch.arange(n, device=prefix.device), torch.ones(n, 1, dtype=torch.long, device=prefix.device)
    cache = lm(input_ids=enc(prefix), use_cache=True).past_key_values
    mask = torch.cat([(torch.arange(width, device=prefix.device)[None] < t[:, None]).long(), ones], 1)
    env = adapter.envelope()
    with env.trace(enc(prefix[rows, t][:, None]), past_key_values=cache, attention_mask=mask,
                   position_ids=t[:, None], use_cache=True):
        node = adapter.at(env, site)
        node.output = with_first(node.output, state[:, None])
        out = env.output.save()
    preds = []
    for j in range(cont.shape[1]):
        pred = adapter.tokens.logits(model_logits(out))[:, -1].argmax(-1)
        preds.append(pred)
        if j + 1 < cont.shape[1]:
            fed = torch.where(scored[:, j], pred, cont[:, j])
            mask = torch.cat([mask, ones], 1)
            out = lm(input_ids=enc(fed[:, None]), past_key_values=out.past_key_values, attention_mask=mask,
                     position_ids=(t + 1 + j)[:, None], use_cache=True)
    return torch.stack(preds, 1)
