"""Interventions and alignment: interchange interventions, DAS, full swaps, controls."""
from .batched import DASRequest, das_many
from .fullswap import FullSwapResult, full_swap
from .maps import FixedMap, LinearMap, OrthogonalMap, block_masks, interchange, make_map
from .protocol import CONTROLS, MAPS, DASOptions, FullSwapOptions
from .search import DASResult, das, untrained_copy
from .sites import RecurrentSite, StreamSite, cache, frozen, get_site

__all__ = ["CONTROLS", "DASResult", "das", "das_many", "DASRequest", "untrained_copy", "FullSwapResult", "full_swap", "MAPS", "FixedMap",
           "LinearMap", "OrthogonalMap", "block_masks", "interchange", "make_map", "DASOptions", "FullSwapOptions",
           "RecurrentSite", "StreamSite", "cache", "frozen", "get_site"]
