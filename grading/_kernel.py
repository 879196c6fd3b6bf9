"""Start an IPython kernel under an address-space limit, so a memory bomb raises MemoryError or dies alone.

Used as the grading kernel's argv: python -m grading._kernel --memory-mb M -f {connection_file}
"""

import resource
import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--memory-mb"]:
        limit = int(args[1]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        args = args[2:]
    sys.argv = [sys.argv[0]] + args
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
