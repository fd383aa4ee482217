"""The one decorator every Flywheel step's KFP wrapper uses, and the one way they set an output
artifact's metadata.

It imports KFP's decorator from its own module rather than `kfp.dsl.component`: inside a running
task KFP sets _KFP_RUNTIME=true and `kfp.dsl` then leaves `component` out, yet the wrapper's body
imports the step module that defines it. Every component runs in the project's image with the
project (and kfp) installed, so KFP is not pip-installed at task start.
"""
from kfp.dsl.component_decorator import component

from flywheel import names


def flywheel_component(func):
    return component(func, base_image=names.COMPONENT_IMAGE, install_kfp_package=False)


def set_metadata(artifact, values: dict) -> None:
    """Add `values` to an output artifact's metadata, leaving out those that are None. KFP's
    launcher turns each top-level value into an ML Metadata property and fails the task on a null
    one ("unknown/unsupported value type *structpb.Value_NullValue", KFP 2.14), after its work is
    done; kfp.local takes it. Every reader uses .get(), which reads a key left out as None."""
    artifact.metadata.update({key: value for key, value in values.items() if value is not None})
