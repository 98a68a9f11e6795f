"""What the tests and the benchmarks both drive: real service processes, MQTT collectors, a throw-away PostgreSQL.

Not installed with facewire: it is imported from a checkout by ``tests/`` and ``bench/``.
"""
