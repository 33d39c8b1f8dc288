"""The options of `explain`: what it tests, how hard, and the thresholds of its decision rule."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .. import options
from ..align.maps import subspace_size
from ..align.protocol import MAPS, MAX_PAIRS
from ..errors import NumvarsError
from ..models.config import MAX_D_MODEL
from ..options import opt
from ..programs import get_program
from ..programs.sampling import POSITIONS
from ..device import resolve_device

BUILT_IN = "up_down,up_up,ctx_distributed"


@dataclass(frozen=True)
class ExplainOptions:
    program: str = opt(BUILT_IN, "programs to test, comma-separated; your own as path/to/file.py:ClassName")
    site: str | None = opt(None, "sites, comma-separated; default: every site the model names (every resid.L of "
                                 "a Transformer), else state; 'default' for the model's default site only")
    variables: str = opt("core", "core (the variables each verdict needs: Up-Down's count, Up-Up's two counts) or "
                                 "all (the phase variables too)")
    ks: str = opt("1,2,d/4,d/2", "subspace sizes (integers, or d/N of the state size d); the ones below d/2 are "
                                 "fitted only where the d/2 fit found something (validation IIA >= margin)")
    maps: str = opt("orthogonal,linear", "alignment maps to try")
    n_train: int = opt(10_000, "training pairs per alignment")
    n_val: int = opt(1_000, "validation pairs (choose the best alignment)")
    n_test: int = opt(1_000, "test pairs (the reported IIA)")
    n_eval: int = opt(2_000, "fresh pairs per variable for the random-subspace controls, the isolation score and "
                             "the comparisons with rival programs")
    positions: str = opt("all", "where the alignments swap: all (every non-BOS/EOS/PAD position) or tokens (demo "
                                "and response tokens only)")
    das_seeds: int = opt(1, "DAS seeds (pairs and starting map) per alignment; intervals then cover runs x seeds")
    random_seeds: int = opt(3, "random subspaces at the best alignment's site and k: the matched random control")
    margin: float = opt(0.1, "IIA a variable needs above each of its controls, with p < alpha")
    strong: float = opt(0.8, "non-trivial IIA of every core variable (for Context-Distributed: full-swap IIA or "
                             "the attention test) that makes a verdict strong rather than partial")
    alpha: float = opt(0.01, "significance level of the paired tests (against controls and rival programs)")
    attention: bool = opt(True, "run the attention test on Transformers")
    seed: int = opt(0, "seed of the pairs and maps")
    device: str = opt("cpu", "cpu, cuda or auto")

    def __post_init__(self):
        options.canonicalize(self)
        options.check_choice("variables", self.variables, ("core", "all"))
        options.check_choice("positions", self.positions, POSITIONS)
        for name in ("margin", "strong", "alpha"):
            options.check_range(name, getattr(self, name), 0.0, 1.0)
        for name in ("n_train", "n_val", "n_test", "n_eval"):
            options.check_range(name, getattr(self, name), 1, MAX_PAIRS)
        options.check_range("das_seeds", self.das_seeds, 1, 100)
        options.check_range("random_seeds", self.random_seeds, 1, 100)
        options.check_seed("seed", self.seed)
        if not self.map_list:
            raise NumvarsError(f"maps={self.maps!r} names no map; choose among {', '.join(MAPS)}")
        for m in self.map_list:
            options.check_choice("maps", m, MAPS)
        self.k_values(MAX_D_MODEL)                        # the words of ks are checked now, the sizes per model
        resolve_device(self.device)

    @property
    def map_list(self) -> list[str]:
        return [m.strip() for m in self.maps.split(",") if m.strip()]

    def programs(self) -> dict:
        out = {}
        for name in self.program.split(","):
            program = get_program(name.strip())
            out[program.name] = program
        return out

    def k_values(self, d: int) -> list[int]:
        """The subspace sizes of the sweep for a state of size d, ascending (d/2 always among them); each word
        read as the `k` of an alignment is (`maps.subspace_size`)."""
        return sorted({subspace_size(word, d) for word in self.ks.split(",") if word.strip()} |
                      {subspace_size(None, d)})

    def sites(self, model) -> list[str]:
        from ..models import default_site

        if self.site == "default":
            return [default_site(model)]
        if self.site:
            return [s.strip() for s in self.site.split(",")]
        return list(getattr(model, "site_names", ())) or [default_site(model)]

    def das_options(self, seed: int) -> dict:
        """The DAS options every alignment of `explain` shares (the pairs and where they are drawn)."""
        return {"n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test, "seed": seed,
                "positions": self.positions, "device": self.device}

    def key(self) -> dict:
        """What changes the evidence of a run (not where it is computed)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "device"}
