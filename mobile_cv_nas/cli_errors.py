"""Command-line mistakes as one line: argparse prints its whole usage block before the error,
which buries the one thing wrong; the tools print `error: ...` (with where to find the usage)
and exit with status 2, as every other user error of the project does."""

import sys


def one_line_usage_errors(parser):
    """Make `parser`'s errors (unknown flag, bad value, missing argument) one line."""

    def error(message):
        print(f"error: {message} (see {parser.prog} --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error
    return parser
