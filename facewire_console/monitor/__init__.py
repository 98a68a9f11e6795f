"""The ``facewire monitor`` live terminal view, ``facewire tail`` and Home Assistant discovery."""
