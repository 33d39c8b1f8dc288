"""numvars: find symbol-like number variables inside neural networks."""
__version__ = "0.2.0"

# The protocol/format versions of the results numvars computes: TRAIN_PROTOCOL for trained runs (part of
# every run id; written into config.yaml and summary.json), PROTOCOL for alignments, full swaps and
# attention tests (part of every job key; written into result.json). Bump one with any change that alters
# those results, so that results computed by older code are never reused.
TRAIN_PROTOCOL = 2
PROTOCOL = 3
