"""``make api``: the API tier on uvicorn, routing to the backends of ``--config`` (default client/api.toml)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from blip_api.access import UVICORN_LOG_CONFIG
from blip_api.app import create_app, openapi_text
from blip_api.settings import ApiSettings, SettingsError
from blip_api.telemetry import configure_tracing
from blip_contract.env import env_default, env_flag
from blip_contract.logs import configure_logging
from blip_contract.version import add_version_option

# The checkout's example config (`make api` runs from the checkout; images pass --config).
DEFAULT_CONFIG = Path("client/api.toml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-api", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path(env_default("API_CONFIG") or DEFAULT_CONFIG))
    parser.add_argument(
        "--listen-address", "--host", default=env_default("LISTEN_ADDRESS", "127.0.0.1"), help="address to listen on"
    )
    parser.add_argument("--port", type=int, default=int(env_default("API_PORT") or 8080))
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env_default("API_METRICS_PORT") or 0) or None,
        help="serve /metrics on this port of the listen address only (default: on --port)",
    )
    parser.add_argument(
        "--insecure-dev",
        action="store_true",
        default=env_flag("INSECURE_DEV"),
        help="accept requests without a bearer token (development only)",
    )
    parser.add_argument("--log-level", default=env_default("LOG_LEVEL", "info"))
    parser.add_argument(
        "--openapi",
        action="store_true",
        help="print the OpenAPI document served for --config and exit (make openapi writes docs/openapi.json)",
    )
    args = add_version_option(parser).parse_args(argv)
    configure_logging(args.log_level)

    try:
        # The document needs no token: it is the same whoever may call.
        settings = ApiSettings.load(args.config, insecure_dev=args.insecure_dev or args.openapi)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.openapi:
        sys.stdout.write(openapi_text(create_app(settings)))
        return 0
    if settings.insecure_dev:
        logging.getLogger("blip_api").warning("INSECURE DEV MODE: requests are not authenticated")

    provider = configure_tracing()
    uvicorn.run(
        create_app(settings, metrics_address=(args.listen_address, args.metrics_port) if args.metrics_port else None),
        host=args.listen_address,
        port=args.port,
        log_level=args.log_level.lower(),
        # h11: the parser whose buffer cap is set here (httptools has none). A header block up to 4x the app's
        # limit reaches the app, which answers 431 naming the limit; a larger one still arriving is cut off by
        # the parser with 400 before it is buffered whole.
        http="h11",
        h11_max_incomplete_event_size=4 * settings.limits.max_header_bytes,
        server_header=False,
        # uvicorn's lines through the process's one log setup (text or JSON, with the request id); the access line
        # is the app's own (blip_api.access), with the route, backend, attempts and request id in it.
        log_config=UVICORN_LOG_CONFIG,
        access_log=False,
    )
    if provider is not None:
        provider.shutdown()  # the last spans, flushed
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
