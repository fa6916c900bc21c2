"""``python -m fairbig``: the CLI through a given interpreter (Snakemake rules use this)."""

from .cli import _entry

_entry()
