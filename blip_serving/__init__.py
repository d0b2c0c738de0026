"""Shared library for serving BLIP VQA on Triton: one spec drives tracing, configs, serving and the client."""
