"""`python -m cli`: the `meshid` command."""

from cli.main import entry

entry()
