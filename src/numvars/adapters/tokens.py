"""The token map of an adapted model: which of the model's token ids stands for each task token."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import NumvarsError


class TokenMap:
    """task token name -> model token id, for every token of the task's vocabulary (PAD included: it fills
    the end of shorter sequences). `encode` turns task ids into model ids; `logits` keeps, of the model's
    logits, the columns of the task's tokens, in the task's order, so argmax and cross-entropy speak the
    task's vocabulary."""

    def __init__(self, mapping: dict, vocab: dict[str, int], model_vocab_size: int | None = None):
        missing = [name for name in vocab if name not in mapping]
        if missing:
            raise NumvarsError(f"the token map has no model token for task token(s) {', '.join(missing)}; map every "
                               f"one of {', '.join(vocab)}, e.g. tokens=" + ",".join(f"{n}:{i}" for n, i in vocab.items()))
        extra = [name for name in mapping if name not in vocab]
        if extra:
            raise NumvarsError(f"the token map names {', '.join(map(str, extra))}, which the task does not have; its "
                               f"tokens: {', '.join(vocab)}")
        ids = {}
        for name in vocab:
            value = mapping[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or \
                    (model_vocab_size is not None and value >= model_vocab_size):
                bound = f" below the model's vocabulary size {model_vocab_size}" if model_vocab_size else ""
                raise NumvarsError(f"token map {name}={value!r}: give a model token id, an integer >= 0{bound}")
            ids[name] = value
        model_ids = [ids[name] for name in sorted(vocab, key=vocab.get)]
        if len(set(model_ids)) != len(model_ids):
            raise NumvarsError("the token map gives two task tokens the same model token; each needs its own")
        self.mapping = ids
        self.ids = torch.tensor(model_ids)            # task id -> model id

    def encode(self, tokens: Tensor) -> Tensor:
        return self.ids.to(tokens.device)[tokens]

    def logits(self, model_logits: Tensor) -> Tensor:
        return model_logits.index_select(-1, self.ids.to(model_logits.device))


def parse_token_map(text: str) -> dict[str, int | str]:
    """`PAD:0,BOS:1,...` (or `=` for `:`) as a dict; a value that is not an integer is a token of the model's
    tokenizer (`BOS:<|endoftext|>`), looked up by `resolve_strings`."""
    out = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        name, sep, value = part.replace("=", ":", 1).partition(":")
        if not sep or not name.strip() or not value.strip():
            raise NumvarsError(f"token map entry {part!r}: write TASK_TOKEN:MODEL_ID (or a tokenizer token), "
                               f"e.g. BOS:1")
        value = value.strip()
        out[name.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return out


def resolve_strings(mapping: dict, folder) -> dict:
    """The map with each string value replaced by its id in the tokenizer of a Hugging Face folder
    (tokenizer.json, read as data); a one-line error when there is none or a string is not one token."""
    strings = {name: value for name, value in mapping.items() if isinstance(value, str)}
    if not strings:
        return dict(mapping)
    from pathlib import Path
    path = Path(str(folder)) / "tokenizer.json" if folder is not None else None
    if path is None or not path.is_file():
        raise NumvarsError(f"token map {', '.join(f'{k}={v!r}' for k, v in strings.items())}: a token by name "
                           f"needs the model folder's tokenizer.json; give model token ids instead")
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(str(path))
    out = dict(mapping)
    for name, value in strings.items():
        token_id = tokenizer.token_to_id(value)
        if token_id is None:
            raise NumvarsError(f"token map {name}={value!r}: the tokenizer has no such token; give one of its "
                               f"tokens or a model token id")
        out[name] = token_id
    return out
