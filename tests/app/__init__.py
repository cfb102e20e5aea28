"""The app as a whole: the CLI, migrations, processes side by side, the compose file."""
