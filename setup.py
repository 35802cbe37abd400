"""Package layout that pyproject.toml cannot express: the zoo's checkpoints (``models/``) and
recipes (``configs/``) stay at the top of the repository and are shipped inside the wheel as
package data under ``geozoo/_shipped/``, where :func:`geozoo.zoo.models_dir` and
:func:`geozoo.zoo.recipes.configs_dir` find them in an installed package."""

from setuptools import find_packages, setup

SHIPPED = {"geozoo._shipped.models": "models", "geozoo._shipped.configs": "configs"}

setup(
    packages=find_packages(include=["geozoo", "geozoo.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    package_data={
        "geozoo._shipped.models": ["*/config.json", "*/*.safetensors", "*/README.md"],
        "geozoo._shipped.configs": ["*.yaml"],
    },
)
