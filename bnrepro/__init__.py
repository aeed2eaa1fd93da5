"""bnrepro: a reproduction suite for Ioffe & Szegedy, Batch Normalization (ICML 2015)."""

__version__ = "0.1.0"
