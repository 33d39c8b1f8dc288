"""Any model: numvars' interventions on a model it did not build, through nnsight.

    from numvars.adapters import adapt
    model = adapt(my_module_or_hf_folder, site="transformer.h.1", tokens={"PAD": 0, "BOS": 1, ...}, task=task)
    align.das(model, task, ...)            # and full_swap, trial_accuracy, explain, align_models

The site is a module path. A recurrent module (`nn.GRU`, `nn.RNN`, `nn.LSTM`) gives the step protocol (site
`state`, run step by step); any other module gives the named-site protocol with its output stream (the site
keeps its path as name). The token map gives the model's token id for each task token.
"""
from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from ..errors import NumvarsError
from .base import Adapted, find_module
from .recurrent import RecurrentAdapter
from .stream import StreamAdapter
from .tokens import TokenMap, parse_token_map, resolve_strings

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")      # org/name, as the Hugging Face hub names models

__all__ = ["Adapted", "RecurrentAdapter", "StreamAdapter", "TokenMap", "adapt", "load_model", "parse_token_map"]


def load_model(source) -> nn.Module:
    """A torch module as it is, or a Hugging Face causal LM from a local folder or, by its hub id, from the local
    Hugging Face cache (safetensors only, no code from the folder, never a download)."""
    if isinstance(source, nn.Module):
        return source
    folder = Path(str(source))
    hub_id = HUB_ID.match(str(source)) and not folder.exists()
    if not hub_id and (not folder.is_dir() or not (folder / "config.json").is_file()):
        raise NumvarsError(f"{source}: give a torch.nn.Module, a local Hugging Face model folder (with config.json "
                           f"and model.safetensors) or the id of a model in the local Hugging Face cache; models are "
                           f"never downloaded")
    try:
        import transformers
    except ImportError:
        raise NumvarsError("a Hugging Face model needs transformers: pip install 'numvars[hf]'") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(str(source), local_files_only=True,
                                                                 use_safetensors=True).eval()
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        where = "is not in the local Hugging Face cache (numvars never downloads)" if hub_id else \
            "holds no causal LM transformers can read from safetensors"
        raise NumvarsError(f"{source} {where} ({' '.join(str(e).split())[:160]})") from None


def adapt(model, site: str, tokens: dict, task) -> Adapted:
    """`model` (a module or a local HF folder) with its site module at path `site`, its token ids for the
    task's tokens in `tokens` (name -> id, or name -> a token of the folder's tokenizer), as a model numvars'
    interventions run on."""
    try:
        import nnsight  # noqa: F401
    except ImportError:
        raise NumvarsError("the adapter needs nnsight: pip install 'numvars[nnsight]'") from None
    module = load_model(model)
    vocab_size = getattr(getattr(module, "config", None), "vocab_size", None)
    tokens = resolve_strings(tokens, None if isinstance(model, nn.Module) else model)
    token_map = TokenMap(tokens, task.vocab, vocab_size)
    kind = RecurrentAdapter if isinstance(find_module(module, site), nn.RNNBase) else StreamAdapter
    return probe(kind(module, site, token_map), task)


def probe(model: Adapted, task) -> Adapted:
    """Run the adapted model once on two task tokens, so that a model without a causal LM forward, or a site
    module its forward never runs, is one line now rather than a failure deep inside an alignment."""
    import torch

    tokens = torch.tensor([[task.vocab["BOS"] if "BOS" in task.vocab else 0, task.vocab["EOS"]]])
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(tokens)
            model.step(tokens[:, 0], model.initial_state(1)) if isinstance(model, RecurrentAdapter) \
                else model.activations(tokens, model.site)
    except NumvarsError:
        raise
    except Exception as e:          # nnsight's and the model's own errors: the model does not fit the adapter
        raise NumvarsError(f"the model does not run as a causal LM with module {model.site!r} in its forward "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    finally:
        model.train(was)
    return model
