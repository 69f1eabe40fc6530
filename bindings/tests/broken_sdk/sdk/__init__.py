"""A broken SDK for the C test test_init_failure: put first on OCTC_PYTHONPATH, it hides the real one."""

raise ImportError("this SDK is broken on purpose (bindings/tests/broken_sdk)")
