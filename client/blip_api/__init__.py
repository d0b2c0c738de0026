"""The reference API tier that pet cameras call: FastAPI in front of the router and the Triton fleets."""
