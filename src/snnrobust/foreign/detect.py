"""Which framework a user's model is built with, and whether its installed version is supported.

Detection reads only the modules' classes (``type(m).__module__``): a module of
``spikingjelly.*`` makes it a SpikingJelly model, one of ``snntorch.*`` an snnTorch model,
neither a plain PyTorch model. Both at once is refused (one reset convention per model).
"""

from __future__ import annotations

from importlib import metadata

from torch import nn

from ..errors import ConfigError

FRAMEWORKS = ("spikingjelly", "snntorch", "torch")

#: supported major versions, and what to run when the package is missing
SUPPORTED = {
    "spikingjelly": (2, "pip install --no-deps spikingjelly loguru  (SpikingJelly 2.x; --no-deps keeps its "
                       "torchvision/torchaudio requirements, which snnrobust does not need, out)"),
    "snntorch": (1, "pip install 'snnrobust[snntorch]'  (snnTorch 1.x)"),
}


def installed_version(framework: str) -> str:
    """The installed version string of ``framework``; a one-line error saying what to install
    when it is missing."""
    major, how = SUPPORTED[framework]
    try:
        return metadata.version(framework)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"{framework} is not installed; run: {how}") from None


def require_version(framework: str) -> str:
    """Check that ``framework`` is installed in a supported major version and imports."""
    major, how = SUPPORTED[framework]
    version = installed_version(framework)
    try:
        got = int(version.split(".")[0])
    except ValueError:
        got = -1
    if got != major:
        raise ConfigError(f"unsupported {framework} version {version}; snnrobust supports {framework} {major}.x "
                          f"({how})")
    try:
        __import__(framework)
    except ImportError as e:
        raise ConfigError(f"{framework} {version} does not import ({str(e).splitlines()[0]}); run: {how}") from None
    return version


def detect(model: nn.Module) -> str:
    """``"spikingjelly"``, ``"snntorch"`` or ``"torch"`` from the classes of ``model``'s modules."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the model must be a torch nn.Module, got {type(model).__name__}")
    found = set()
    for m in model.modules():
        top = type(m).__module__.split(".")[0]
        if top in ("spikingjelly", "snntorch"):
            found.add(top)
    if len(found) > 1:
        raise ConfigError("the model mixes SpikingJelly and snnTorch modules; wrap a model built with one of them")
    return found.pop() if found else "torch"


def check_framework(name: str) -> str:
    key = str(name).lower().replace("-", "").replace("_", "")
    aliases = {"auto": "auto", "spikingjelly": "spikingjelly", "sj": "spikingjelly", "snntorch": "snntorch",
               "torch": "torch", "pytorch": "torch", "plain": "torch"}
    if key not in aliases:
        raise ConfigError(f"unknown framework {name!r}; choose one of: auto, {', '.join(FRAMEWORKS)}")
    return aliases[key]
