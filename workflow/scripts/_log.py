"""Send a rule script's output to its log file (imported first by every script)."""

import logging
import sys


def to_log(smk):
    if smk.log:
        fh = open(smk.log[0], "a", buffering=1)  # noqa: SIM115
        sys.stdout = sys.stderr = fh
        logging.basicConfig(stream=fh, level=logging.INFO, force=True)
