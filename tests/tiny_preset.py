"""A reproduction grid small enough for the test suite: counts 1..5, tiny models and pair sets."""
from numvars.reproduce.run import Preset

TINY_PRESET = Preset(
    name="tiny", seeds=(0, 1), archs=("gru", "transformer"), tasks=("single_object",), d_model=12,
    sizes=(8, 12), size_seeds=(0,), control_seeds=(0,), dynamics=(("gru", "single_object"),),
    variants=(("npe", "transformer", "single_object", (("pos", "none"),)),),
    train={"max_count": 5, "holdouts": "", "max_epochs": 150},
    das={"n_train": 300, "n_val": 100, "n_test": 100, "max_epochs": 3, "patience": 2},
    dynamics_das={"n_train": 200, "n_val": 50, "n_test": 50, "max_epochs": 2, "patience": 1},
    fullswap_n=100, oor_max=8, oor_per_count=3,
    explain={"ks": "d/2", "maps": "orthogonal", "site": "default", "variables": "core", "n_train": 300, "n_val": 100,
             "n_test": 100},
    align_models=((("gru", "single_object", 0), ("gru", "single_object", 1)),
           (("gru", "single_object", 0), ("transformer", "single_object", 0))),
    align_models_options={"n_train": 300, "n_val": 100, "n_test": 100, "max_epochs": 3})
