"""nebula: the backend daemon of a self-hosted server panel."""

__version__ = "0.1.0"
