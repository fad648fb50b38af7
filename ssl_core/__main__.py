"""``python -m ssl_core`` is the ``ssl`` command (and what torchrun launches)."""

from ssl_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
