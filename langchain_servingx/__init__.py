"""LangChain integrations for model serving endpoints."""

from langchain_servingx._version import __version__

__all__ = ["__version__"]
