"""The ``mmreason`` command. Each subcommand only parses arguments and calls :mod:`mmreason.api`."""
