"""The `sign-mlops` command: Typer commands (app) and console rendering (render). Thin: parse,
build the objects, call the layers below."""
