"""The one decorator every Flywheel step's KFP wrapper uses.

It imports KFP's decorator from its own module rather than `kfp.dsl.component`: inside a running
task KFP sets _KFP_RUNTIME=true and `kfp.dsl` then leaves `component` out, yet the wrapper's body
imports the step module that defines it. Every component runs in the project's image with the
project (and kfp) installed, so KFP is not pip-installed at task start.
"""
from kfp.dsl.component_decorator import component

from flywheel import names


def flywheel_component(func):
    return component(func, base_image=names.COMPONENT_IMAGE, install_kfp_package=False)
