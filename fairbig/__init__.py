"""fairbig: the FAIRly big workflow as a product."""

__version__ = "0.1.0"
