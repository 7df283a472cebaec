from landscape_cli.main import cli

cli(prog_name="landscape")
