"""fairbig: the FAIRly big workflow as a product."""

from pathlib import Path

__version__ = "0.1.0"


def snakefile() -> Path:
    """The Snakemake workflow shipped with fairbig, for ``module fairbig: snakefile: …``."""
    from .resources import data_path

    return data_path("workflows/Snakefile")
