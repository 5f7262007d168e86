"""``python -m reprokit``: the ``reprokit`` command for an interpreter whose scripts folder is not on the path
(a virtual environment not activated, a notebook's ``sys.executable``), with the same exit codes."""
import sys

from reprokit.cli import main

if __name__ == "__main__":
    sys.exit(main())
