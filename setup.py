"""Packaging glue that pyproject.toml cannot express: the repository's top-level ``prompts/`` and ``knowledge/``
folders (the source, edited and reviewed there) ship inside the package as ``mmreason/prompts`` and
``mmreason/knowledge``, so an installed wheel finds its prompt templates and class lists wherever it runs
(``mmreason/assets/paths.py`` reads them). Which of their files ship (of ``knowledge/`` only the class lists, never
generated assets) is pyproject.toml's ``package-data``; everything else is in pyproject.toml too.
"""
from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["mmreason*"], exclude=["*.__pycache__"])
    + ["mmreason.prompts", "mmreason.knowledge"],
    package_dir={"mmreason.prompts": "prompts", "mmreason.knowledge": "knowledge"},
)
