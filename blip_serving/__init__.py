"""Serving BLIP VQA on Triton: one spec drives tracing, configs and the stubs; callers use ``blip_contract``.

The layers, bottom to top, are in pyproject.toml (import-linter) and docs/architecture.md.
"""
