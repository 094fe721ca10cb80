"""Builds mmhire the OpenMMLab way: besides the Python package, a wheel carries the configs,
the tools and the model index in ``mmhire/.mim/``, where ``mim train/test/search`` and
``python -m mmhire`` look for them. An editable install reads them from the checkout instead.
All metadata is in pyproject.toml."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

# What `mim` expects in <package>/.mim, relative to the source tree.
MIM_FILES = ('configs', 'tools', 'model-index.yml')


class BuildWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` into ``mmhire/.mim`` of the build."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        here = os.path.dirname(os.path.abspath(__file__))
        target = os.path.join(self.build_lib, 'mmhire', '.mim')
        if os.path.isdir(target):
            shutil.rmtree(target)
        for name in MIM_FILES:
            src = os.path.join(here, name)
            dst = os.path.join(target, name)
            if os.path.isdir(src):
                shutil.copytree(src, dst,
                                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                os.makedirs(target, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={'build_py': BuildWithMim})
