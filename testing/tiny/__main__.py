"""``python -m testing.tiny OUT_DIR [STACK ...] [--seed N]``: write tiny stacks for the demo or by hand."""

import argparse
import sys
from pathlib import Path

from testing.tiny import build_tiny_stacks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("stacks", nargs="*", help="stack names (default: every stack with a tiny builder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = build_tiny_stacks(args.out_dir, args.stacks, args.seed)
    print(f"tiny stacks in {args.out_dir}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
