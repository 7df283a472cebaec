"""Entry point: ``landscape`` command group."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def cli() -> None:
    """Loss-landscape analysis for PyTorch (Santurkar et al., NeurIPS 2018)."""
