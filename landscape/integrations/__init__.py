"""Adapters to other training frameworks, each behind an optional extra: import
the one you need (``landscape.integrations.lightning``); ``import landscape``
never imports them or their framework."""
