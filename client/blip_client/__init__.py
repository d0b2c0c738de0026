"""Typed client for the blip_vqa ensemble."""
