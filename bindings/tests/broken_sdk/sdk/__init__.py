"""A broken SDK for the C test test_init_failure: make_fixtures.py links it into a copy of the
library's runtime folder in place of the real one."""

raise ImportError("this SDK is broken on purpose (bindings/tests/broken_sdk)")
