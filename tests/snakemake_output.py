"""Reading Snakemake's console output in tests."""

import re

_TOTAL_JOBS = re.compile(r"^total\s+(\d+)\s*$", re.MULTILINE)


def nothing_to_do(output: str) -> bool:
    """True when a (dry) run planned no job.

    Snakemake prints "Nothing to be done" when the whole DAG is up to date, but only a job table with
    "total 0" when ``--until`` cuts the DAG short of rules that still have work.
    """
    if "Nothing to be done" in output:
        return True
    totals = _TOTAL_JOBS.findall(output)
    return bool(totals) and all(int(total) == 0 for total in totals)
