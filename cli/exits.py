"""The command line's exit codes (a signal's own, 130 and 143, come from `meshid.interrupt`)."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
