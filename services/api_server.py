"""The scoring API as a server process: uvicorn serving scoring.api on `services.host:services.api.port`.

One worker process: the model is a small MLP and a request takes milliseconds of one core, so a
second worker would only double the memory and the model loads. SIGTERM (`services stop`) lets
requests in flight finish.
"""

from __future__ import annotations

from lakehouse.config import load_config
from services.server_args import server_args


def main(argv: list[str] | None = None) -> None:
    args = server_args("services.api_server", __doc__.splitlines()[0], argv)
    cfg = load_config(args.env, args.root, args.conf_dir)
    import uvicorn

    from scoring.api import create_app

    uvicorn.run(create_app(cfg), host=cfg.services.host, port=cfg.services.api.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
