"""The one error a request's own fault raises on either tier: the API tier answers it 400, a stub INVALID_ARG."""


class InvalidInputError(ValueError):
    """The request itself is wrong: the message names what, and the caller gets INVALID_ARG (HTTP 400).

    ``blip_images`` raises it for a bad frame wherever the frame is read, so the API tier refuses a frame with the
    very message a fleet would give."""
