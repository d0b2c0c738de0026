"""``make api``: the API tier on uvicorn, routing to the backends of ``--config`` (default client/api.toml)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "api.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-api", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path(os.environ.get("API_CONFIG") or DEFAULT_CONFIG))
    parser.add_argument("--host", default=os.environ.get("API_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT") or 8080))
    parser.add_argument(
        "--insecure-dev",
        action="store_true",
        default=os.environ.get("INSECURE_DEV") == "1",
        help="accept requests without a bearer token (development only)",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL") or "info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from blip_api.settings import ApiSettings, SettingsError

    try:
        settings = ApiSettings.load(args.config, insecure_dev=args.insecure_dev)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if settings.insecure_dev:
        logging.getLogger("blip_api").warning("INSECURE DEV MODE: requests are not authenticated")

    import uvicorn

    from blip_api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        # h11: the parser whose buffer cap is set here (httptools has none). A header block up to 4x the app's
        # limit reaches the app, which answers 431 naming the limit; a larger one still arriving is cut off by
        # the parser with 400 before it is buffered whole.
        http="h11",
        h11_max_incomplete_event_size=4 * settings.limits.max_header_bytes,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
