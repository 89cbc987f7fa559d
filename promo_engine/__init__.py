"""promo-engine: merchant rewards and promotions for a bank's digital wallet."""
from .hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
