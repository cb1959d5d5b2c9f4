"""Root conftest: loads the defectbench pytest plugin for the benchmark suite and the tests.

The plugin is registered under the name `defectbench`, so `-p no:defectbench` turns it off (say,
to run the unit tests past a stale DEFECTBENCH_* variable). Listed in `pytest_plugins` it was
registered under its module name, `defectbench.plugin`, which that option does not block;
`-p no:defectbench.plugin` keeps working too. It is not a `pytest11` entry point: that would
load it, with its options and its session-start checks, into every pytest run of the
environment, other projects' included.
"""

PLUGIN_NAME = "defectbench"
PLUGIN_MODULE = "defectbench.plugin"


def pytest_addhooks(pluginmanager) -> None:
    """Register the plugin as this conftest is registered: after `-p no:...` has been read,
    and before the command line is parsed, as the plugin's options need."""
    if pluginmanager.is_blocked(PLUGIN_NAME) or pluginmanager.is_blocked(PLUGIN_MODULE):
        return
    import importlib

    plugin = importlib.import_module(PLUGIN_MODULE)
    if pluginmanager.is_registered(plugin):  # `-p defectbench.plugin` loaded it already
        return
    holder = pluginmanager.get_plugin(PLUGIN_NAME)
    if holder is not None:
        import pytest

        # `-p defectbench` registers the package (defectbench/__init__.py) under that name
        raise pytest.UsageError(
            f"-p {PLUGIN_NAME} loads the {getattr(holder, '__name__', holder)!r} module, not "
            f"the suite's plugin, which this conftest loads: drop the option (or give "
            f"-p {PLUGIN_MODULE})"
        )
    pluginmanager.register(plugin, PLUGIN_NAME)
