"""Run the emulator: `python -m sandbox.emulator --state-dir DIR`."""

from sandbox.emulator.main import main

main()
