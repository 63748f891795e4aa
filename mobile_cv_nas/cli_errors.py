"""Errors as one line on the command line: argparse prints its whole usage block before the
error and parsers print multi-line reports, which bury the one thing wrong; the tools print
`error: ...` on one line and exit with status 2, as every other user error of the project
does."""

import sys


def one_line_usage_errors(parser):
    """Make `parser`'s errors (unknown flag, bad value, missing argument) one line."""

    def error(message):
        print(f"error: {message} (see {parser.prog} --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error
    return parser


def one_line(error):
    """An error's message of several lines (a YAML parser's, a download's, detectron2's NaN
    report) as the one line the tools print."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())
