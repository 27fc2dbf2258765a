"""openbms: an open battery management system with a digital twin of the pack and its hardware.

Its packages form layers; each imports only the layers below it (``tests/test_code_quality.py``
checks this, and that the import graph has no cycle)::

    chemistry → bms → profiles → twin → fast → scenario → devices → diagnose → apps → cli

``inputs``, ``units`` and ``files`` are neutral helpers that import nothing of openbms, so every
layer may use them. ``profiles`` reads the shipped BMS profile files (YAML) that ``bms``, which
reads no file, validates. ``fast`` holds compiled (numba) kernels for what runs every control
cycle; the Python code of ``twin`` and ``bms`` below it stays the reference they are tested equal
to, and numba is a dependency (the scenario runner's ``engine="fast"``). ``devices`` is above
``scenario`` because the emulator plays a scenario; ``diagnose`` is above ``devices`` because
``diagnose.from_device`` turns a device's reading into a diagnosis snapshot (as
``diagnose.from_twin`` does the twin's): devices never import diagnose. ``apps`` holds the
applications built on all of them (``openbms serve``: the live page and its API). What a pack's BMS reports
is one value, ``bms.reading.PackReading``: the twin reports it (``Twin.reading``) and every device
protocol decodes to it.
"""

__version__ = "0.1.0"
