"""`numvars adapt MODEL site=PATH tokens=T:ID,... [task keys] --out DIR`: a model numvars did not train, ready
for align, fullswap, eval, explain and align-models (DIR takes the place of a run folder)."""
from __future__ import annotations

import argparse


def cmd_adapt(args) -> None:
    from ..adapters import parse_token_map
    from ..adapters.folder import task_keys, write_folder
    from ..errors import NumvarsError
    from ..options import split_words

    words = split_words(args.overrides)
    for key in ("site", "tokens"):
        if not words.get(key):
            raise NumvarsError(f"give {key}=...: site=MODULE.PATH (e.g. transformer.h.1) and tokens=TASK_TOKEN:MODEL_ID,... "
                               f"(e.g. tokens=PAD:0,BOS:1,EOS:2,...)")
    site, tokens = words.pop("site"), parse_token_map(words.pop("tokens"))
    out = write_folder(args.out, args.model, site, tokens, task_keys(words))
    print(f"adapted: {args.model} at {site}; use {out} as a run folder (numvars align {out} ..., fullswap, eval)")


def register(sub) -> None:
    a = sub.add_parser("adapt", help="any model (a local Hugging Face folder) for numvars' interventions, via nnsight",
                       description="Write DIR/adapter.yaml: the model (a local Hugging Face causal LM folder; never "
                                   "downloaded), its site (a module path; an nn.GRU/nn.LSTM/nn.RNN is stepped token by "
                                   "token), the model's token id for each task token, and the task. Then align, "
                                   "fullswap, eval, explain and align-models take DIR as a run folder. Needs the nnsight extra.",
                       epilog="examples:\n"
                              "  numvars adapt runs/RUN/hf site=lm.transformer.h.0 "
                              "tokens=PAD:0,BOS:1,EOS:2,T:3,D:4,R:5 task=single_object max_count=4 holdouts= --out adapted/\n"
                              "  numvars align adapted/ k=10",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("model", help="a local Hugging Face model folder (config.json, model.safetensors)")
    a.add_argument("overrides", nargs="*", metavar="key=value", help="site=, tokens=, and task keys")
    a.add_argument("--out", required=True, help="the adapter folder to write")
    a.set_defaults(func=cmd_adapt)
