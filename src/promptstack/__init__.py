"""Prompt Stack: a production-grade backend for AI-powered products."""

__version__ = "0.1.0"
