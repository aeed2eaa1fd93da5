"""Layers: the paper's Batch Normalization (`bn`, Algorithms 1 and 2) and the normalization family
that can take its slot (`norms`). The networks built from them are in `bnrepro.models`."""
