"""Small helpers shared by the tools."""
from .progress import progress_enabled, track

__all__ = ['progress_enabled', 'track']
