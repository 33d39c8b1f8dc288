"""arch=hf: a small Hugging Face causal LM (GPT-2) that numvars trains, saves with `save_pretrained` and
reads back from that folder, so that tests and tutorials use a real `transformers` model without a download.

The model is `transformers.GPT2LMHeadModel` with numvars' sizes (d_model, n_layers, n_heads), numvars'
vocabulary (PAD=0, BOS=1, EOS=2, so `generate` stops at EOS), learned positions, untied input and output
embeddings (safetensors stores no shared tensors) and GPT-2's own LM head (the MLP head of numvars' models
is not added: this is GPT-2 as the field knows it). `layer_dropout` sets GPT-2's three dropouts.

Its sites are those of numvars' Transformer: `resid.L`, the residual stream after L blocks (`resid.0`: the
token and position embeddings; TransformerLens: `blocks.{L-1}.hook_resid_post`). A site is read and
replaced through forward hooks on the module whose output it is, so GPT-2 runs as `transformers` wrote it.
Needs the `hf` extra (`pip install 'numvars[hf]'`).
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import NumvarsError

MAX_POSITIONS = 1024
FOLDER = "hf"                    # RUN/hf/: the save_pretrained folder


def _transformers():
    try:
        import transformers
    except ImportError:
        raise NumvarsError("arch=hf needs transformers: pip install 'numvars[hf]'") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def gpt2_config(cfg):
    t = _transformers()
    p = cfg.layer_dropout
    return t.GPT2Config(vocab_size=cfg.vocab_size, n_positions=MAX_POSITIONS, n_embd=cfg.d_model,
                        n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=4 * cfg.d_model, resid_pdrop=p,
                        embd_pdrop=p, attn_pdrop=p, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                        tie_word_embeddings=False)


class HFCausalLM(nn.Module):
    """numvars' view of a GPT-2 LM: logits from tokens, and the named-site protocol."""

    def __init__(self, cfg=None, lm: nn.Module | None = None):
        super().__init__()
        self.lm = lm if lm is not None else _transformers().GPT2LMHeadModel(gpt2_config(cfg))
        self.n_layers = int(self.lm.config.n_layer)

    @classmethod
    def from_folder(cls, folder) -> "HFCausalLM":
        """The model saved by `save` (config.json and model.safetensors; never a pickle, never the hub)."""
        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise NumvarsError(f"{folder} lacks config.json or model.safetensors (the save_pretrained files); "
                               f"retrain the run")
        t = _transformers()
        try:
            lm = t.GPT2LMHeadModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, RuntimeError, TypeError) as e:
            raise NumvarsError(f"{folder} holds no GPT-2 model transformers can read "
                               f"({' '.join(str(e).split())[:160]}); retrain the run") from None
        return cls(lm=lm).eval()

    def save(self, folder) -> Path:
        """`save_pretrained` into `folder`, whole or absent: written beside it, then moved into place."""
        folder = Path(folder)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            self.lm.save_pretrained(str(tmp), safe_serialization=True)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return folder

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.shape[1] > MAX_POSITIONS:
            raise NumvarsError(f"sequences of {tokens.shape[1]} tokens are longer than arch=hf's {MAX_POSITIONS} "
                               f"positions; use smaller counts")
        return self.lm(input_ids=tokens).logits

    # --- the named-site protocol ---------------------------------------------------------------------
    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(f"resid.{layer}" for layer in range(self.n_layers + 1))

    @property
    def default_site(self) -> str:
        return f"resid.{min(1, self.n_layers)}"

    def _module(self, site: str) -> nn.Module:
        """The module whose output is the stream at `site` (GPT-2 adds the embeddings, then applies `drop`)."""
        layer = self.site_names.index(site)
        return self.lm.transformer.drop if layer == 0 else self.lm.transformer.h[layer - 1]

    @contextmanager
    def _at(self, site: str, replace: Tensor | None = None, read: list | None = None):
        """While open: the site's stream is appended to `read`, or replaced by `replace` (B, L, d)."""
        def hook(module, args, output):
            stream = output[0] if isinstance(output, tuple) else output
            if read is not None:
                read.append(stream)
            if replace is None:
                return None
            return (replace, *output[1:]) if isinstance(output, tuple) else replace

        handle = self._module(site).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def activations(self, tokens: Tensor, site: str) -> Tensor:
        """The residual stream at `site` for every position: (B, L, d)."""
        read: list[Tensor] = []
        with self._at(site, read=read):
            self.lm.transformer(input_ids=tokens)
        return read[0]

    def logits_from(self, site: str, acts: Tensor, positions: Tensor) -> Tensor:
        """Logits (B, P, V) at positions (B, P) when the stream at `site` is `acts` (B, L, d); the layers
        below the site run on placeholder tokens, their output replaced."""
        placeholder = torch.zeros(acts.shape[:2], dtype=torch.long, device=acts.device)
        with self._at(site, replace=acts):
            logits = self.lm(input_ids=placeholder).logits
        return logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
