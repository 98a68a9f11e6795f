"""facewire's operator apps: the ``facewire`` command, monitor, web dashboard, demo, broker and bench tools.

The one layer above the services: only this package may import several of them.
"""
