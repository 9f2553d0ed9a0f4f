"""WSGI applications that the integration tests serve through the wsgiserve CLI."""
