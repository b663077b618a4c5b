"""MASC: decoding generalisation from memorisation with minimum-angle subspace classifiers."""
from .errors import MASCError
from .masc import MinimumAngleSubspaceClassifier

__all__ = ["MASCError", "MinimumAngleSubspaceClassifier"]
