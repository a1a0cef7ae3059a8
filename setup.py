"""The one compiled part, optional: without a C compiler the package installs and
runs the same Python construction of Event records (monotone/event.py)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("monotone._events", ["monotone/_events.c"], optional=True,
                             extra_compile_args=["-O2"])])
