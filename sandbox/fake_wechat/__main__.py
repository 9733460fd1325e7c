"""`python -m sandbox.fake_wechat`: the fake with every option on the command line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from sandbox.fake_wechat import main
from sandbox.fake_wechat.state import FakeConfig
from shared.config import Settings
from shared.logging import configure_logging


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.fake_wechat")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--seed", type=int, default=None, help="[SIYU_FAKE_WECHAT_SEED or 1]")
    parser.add_argument(
        "--contacts", type=int, default=None, help="[SIYU_FAKE_WECHAT_CONTACTS or 300]"
    )
    defaults = FakeConfig()
    for f in fields(FakeConfig):
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=int, default=None,
            help=f"[{getattr(defaults, f.name)}]",
        )  # fmt: skip
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    args = parse(argv)
    config = FakeConfig()
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(FakeConfig)
        if getattr(args, f.name) is not None and f.name != "token_ttl"
    }
    config.update(overrides)
    settings = Settings.from_env()
    configure_logging(settings.log_level, process="fake-wechat")
    return main(
        settings,
        host=args.host,
        port=args.port,
        seed=args.seed,
        contacts=args.contacts,
        token_ttl=args.token_ttl,
        config=config,
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
