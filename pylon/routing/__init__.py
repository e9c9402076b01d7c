"""Request routing: APISIX-compatible radixtree router and ``vars`` expressions."""

from .expr import ExprError, IpMatcher, VarSource, compile_expr
from .radix import RadixTree
from .router import HTTP_METHODS, KINDS, Match, Router, RouterError, RouteSpec

__all__ = [
    "ExprError",
    "HTTP_METHODS",
    "IpMatcher",
    "KINDS",
    "Match",
    "RadixTree",
    "RouteSpec",
    "Router",
    "RouterError",
    "VarSource",
    "compile_expr",
]
