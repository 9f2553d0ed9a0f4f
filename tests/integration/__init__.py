"""Integration tests: the wsgiserve CLI in a subprocess, driven over real sockets."""
