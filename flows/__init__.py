"""Prefect flows: thin tasks that wire sign_model/ and serving/ together."""
