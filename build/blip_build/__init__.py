"""`make build-artifacts`: trace BLIP's three components for a target, verify them, write the repository configs."""
