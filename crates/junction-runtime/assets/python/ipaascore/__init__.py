"""Integration Service step SDK (spec 004) as provided by Junction.

Import the base class with ``from ipaascore.BaseStep import BaseStep`` and parameter types with
``from ipaascore import parameter_types``. Nothing is imported here on purpose: binding the name
``BaseStep`` in this package would shadow the ``ipaascore.BaseStep`` module.
"""
