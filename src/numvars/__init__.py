"""numvars: find symbol-like number variables inside neural networks."""
__version__ = "0.2.0"

# The protocol/format version of every result numvars computes (trained runs, alignments, full swaps).
# It is part of every run id and job key and is written into config.yaml, summary.json and result.json.
# Bump it with any change that alters results, so that results computed by older code are never reused.
PROTOCOL = 2
