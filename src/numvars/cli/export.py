"""`numvars export ALIGN_DIR --to pyvene|mib|safetensors [--out PATH]`: a fitted map for other tools."""
from __future__ import annotations

import argparse


def cmd_export(args) -> None:
    from ..align.export import export, read_alignment

    path = export(args.align_dir, args.to, args.out)
    a = read_alignment(args.align_dir)
    hook = f" ({a.hook})" if a.hook else ""
    print(f"exported: {args.to}, map={a.map} site={a.site}{hook} k={a.k} variables={','.join(a.variables)} "
          f"d={a.d}; written: {path}")


def register(sub) -> None:
    from ..align.export import FORMATS

    e = sub.add_parser("export", help="write a fitted alignment for pyvene, MIB or as safetensors",
                       description="Write the alignment map of ALIGN_DIR (a folder under RUN/align/) with what is "
                                   "needed to apply it: model, site (and its TransformerLens hook name), k, map kind, "
                                   "dtype, protocol. Default --out: ALIGN_DIR/export/FORMAT.",
                       epilog="examples:\n"
                              "  numvars export runs/RUN/align/das-... --to safetensors\n"
                              "  numvars export runs/RUN/align/das-... --to pyvene --out exported/pyvene\n"
                              "  numvars export runs/RUN/align/das-... --to mib --out submission/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("align_dir")
    e.add_argument("--to", required=True, choices=FORMATS)
    e.add_argument("--out", default=None, help="where to write (a folder; for safetensors, a .safetensors file too)")
    e.set_defaults(func=cmd_export)
