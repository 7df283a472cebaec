"""The click front end of landscape (installed as ``landscape_cli``)."""
