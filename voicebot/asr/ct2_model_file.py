"""Reading and writing CTranslate2's ``model.bin`` (binary version 6), variable by variable.

The recogniser derives a smaller model from the embedded one (see ``vocabulary.py``): the
same weights with fewer rows in the output embedding. CTranslate2's Python package can
write a model only from a converter's spec, not read one back, so this module reads the
file's layout itself: a header (version, spec name, spec revision), then each variable
(name, shape, dtype, raw bytes), then aliases (one variable under a second name, as
Whisper's output projection shares the token embedding). Arrays are memory-mapped, so a
145 MB model is not held in memory twice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

SUPPORTED_VERSION = 6
# Index = CTranslate2's DataType id (include/ctranslate2/types.h); bfloat16 kept as raw bits.
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, np.uint16)


class ModelFileError(ValueError):
    """The file is not a CTranslate2 model this module understands."""


@dataclass
class ModelFile:
    """The contents of a ``model.bin``: variables in file order, and aliases."""

    version: int
    spec_name: str
    revision: int
    variables: list[tuple[str, str, np.ndarray]]  # (name, CTranslate2 dtype, values)
    aliases: list[tuple[str, str]]  # (alias, variable it names)

    def variable(self, name: str) -> np.ndarray:
        for var_name, _, values in self.variables:
            if var_name == name:
                return values
        raise KeyError(name)

    def replace(self, name: str, values: np.ndarray) -> None:
        """Swap one variable's values (same dtype; the shape may change)."""
        for index, (var_name, dtype, old) in enumerate(self.variables):
            if var_name == name:
                if values.dtype != old.dtype:
                    raise ValueError(f"{name}: dtype {values.dtype} differs from {old.dtype}")
                self.variables[index] = (var_name, dtype, values)
                return
        raise KeyError(name)


def read_model_file(path: Path) -> ModelFile:
    """Parse ``path``; the arrays are read-only memory maps of the file."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        try:
            version = _unpack(handle, "I")
            if version != SUPPORTED_VERSION:
                raise ModelFileError(
                    f"{path}: binary version {version}, expected {SUPPORTED_VERSION}"
                )
            spec_name = _read_string(handle)
            revision = _unpack(handle, "I")
            variables = []
            for _ in range(_unpack(handle, "I")):
                name = _read_string(handle)
                shape = tuple(_unpack(handle, "I") for _ in range(_unpack(handle, "B")))
                type_id = _unpack(handle, "B")
                if type_id >= len(_DTYPES):
                    raise ModelFileError(f"{path}: {name} has unknown dtype id {type_id}")
                num_bytes = _unpack(handle, "I")
                offset = handle.tell()
                if offset + num_bytes > size:
                    raise ModelFileError(f"{path}: {name} runs past the end of the file")
                dtype = np.dtype(_NUMPY_DTYPES[type_id])
                if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != num_bytes:
                    raise ModelFileError(f"{path}: {name} has {num_bytes} bytes for {shape}")
                values = (
                    np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
                    if num_bytes
                    else np.zeros(shape, dtype=dtype)
                )
                handle.seek(num_bytes, 1)
                variables.append((name, _DTYPES[type_id], values))
            aliases = [
                (_read_string(handle), _read_string(handle)) for _ in range(_unpack(handle, "I"))
            ]
        except struct.error as exc:
            raise ModelFileError(f"{path}: truncated CTranslate2 model file") from exc
    return ModelFile(version, spec_name, revision, variables, aliases)


def write_model_file(model: ModelFile, out: IO[bytes]) -> None:
    """Write ``model`` in the layout ``read_model_file`` reads (and CTranslate2 loads)."""
    out.write(struct.pack("I", model.version))
    _write_string(out, model.spec_name)
    out.write(struct.pack("I", model.revision))
    out.write(struct.pack("I", len(model.variables)))
    for name, dtype, values in model.variables:
        _write_string(out, name)
        out.write(struct.pack("B", values.ndim))
        for dim in values.shape:
            out.write(struct.pack("I", dim))
        out.write(struct.pack("B", _DTYPES.index(dtype)))
        out.write(struct.pack("I", values.nbytes))
        out.write(np.ascontiguousarray(values).tobytes())
    out.write(struct.pack("I", len(model.aliases)))
    for alias, target in model.aliases:
        _write_string(out, alias)
        _write_string(out, target)


def _unpack(handle: IO[bytes], fmt: str) -> int:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    return struct.unpack(fmt, data)[0]


def _read_string(handle: IO[bytes]) -> str:
    length = _unpack(handle, "H")  # bytes including the terminating NUL
    data = handle.read(length)
    if len(data) != length:
        raise struct.error("string runs past the end of the file")
    return data[:-1].decode("utf-8")


def _write_string(out: IO[bytes], text: str) -> None:
    encoded = text.encode("utf-8")
    out.write(struct.pack("H", len(encoded) + 1))
    out.write(encoded + b"\0")
