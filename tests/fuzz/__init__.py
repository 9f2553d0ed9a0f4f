"""Property-based fuzzing of the request parser against a live server (issue 4 item 7).

`test_fuzz_protocol.py` is the bounded CI pass; `python -m tests.fuzz.run --seconds N`
runs the same properties for longer.
"""
