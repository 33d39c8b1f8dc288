"""Interventions and alignment (SPEC §5): interchange interventions, DAS, full swaps, controls."""
from .search import CONTROLS, DASResult, das, untrained_copy
from .fullswap import FullSwapResult, full_swap
from .maps import MAPS, FixedMap, LinearMap, OrthogonalMap, block_masks, interchange, make_map
from .pairs import PairSet, make_pairset
from .sites import RecurrentSite, ResidualSite, get_site

__all__ = ["CONTROLS", "DASResult", "das", "untrained_copy", "FullSwapResult", "full_swap", "MAPS", "FixedMap",
           "LinearMap", "OrthogonalMap", "block_masks", "interchange", "make_map", "PairSet", "make_pairset",
           "RecurrentSite", "ResidualSite", "get_site"]
