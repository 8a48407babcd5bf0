"""The OpenAPI documents of the API, installed as the data package `mpesa_atm.openapi`.

The YAML files beside this one are the source of truth; this file only makes the folder a package,
so that the same `importlib.resources` lookup finds them in a checkout, an editable install and a
wheel.
"""
