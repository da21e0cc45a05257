"""Reader for dlib's binary serialization of DNN models (enough for the face descriptor file).

dlib writes everything through a handful of primitive encodings:

* **integers**: one control byte whose low 4 bits give the number of value bytes that follow
  (little-endian magnitude) and whose bit 7 flags a negative value; no other bits may be set.
* **floats**: a pair of integers (mantissa ``m``, exponent ``e``) meaning ``m * 2**e``; the
  exponents 32000 / 32001 / 32002 stand for +inf / -inf / nan.
* **strings**: an integer length followed by the raw bytes.
* **bools**: one ASCII byte, ``'1'`` or ``'0'``.
* **tensors** (version 2): ``num_samples, k, nr, nc`` integers, then ``n*k*nr*nc`` little-endian
  IEEE float32 values; **alias tensors** (version 1): the four dimensions, no data.

A network ``loss<L_n<...L_1<input>>>`` is written recursively.  The loss wrapper writes its
version, its own details and then the sub-network.  Every ``add_layer`` writes its version and
then *first* its sub-network, then its own details, so the file holds all versions (outermost
first) and then the layers' details from the input outwards.  Tag and skip layers (``tag1``,
``skip1``...) write only a version (1) and carry no body; their ids are part of the C++ type and
are not stored, so the reader reports them as anonymous :class:`TagSpec` markers.

:func:`read_dlib_net` returns the layers in forward (input to output) order with every parameter
block validated against the shapes its header announces.  Any malformed, truncated or unexpected
content raises :class:`facerecon.errors.ModelFileError` with a one-line message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerecon.errors import ModelFileError

__all__ = [
    "AddPrevSpec",
    "AffineSpec",
    "ConvSpec",
    "DlibNetSpec",
    "DlibReader",
    "FcSpec",
    "InputSpec",
    "LayerSpec",
    "LossMetricSpec",
    "PoolSpec",
    "ReluSpec",
    "TagSpec",
    "read_dlib_net",
]

_FLOAT_SPECIAL = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}


class DlibReader:
    """Cursor over a dlib-serialized byte buffer; every read checks for truncation."""

    def __init__(self, data: bytes, name: str = "dlib file") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.name}: {what} at byte {self.pos}")

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated (wanted {n} more bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def read_int(self) -> int:
        """dlib's portable integer: control byte (size | 0x80 if negative), then the magnitude."""
        ctrl = self._take(1)[0]
        if ctrl & 0x70:
            self.pos -= 1
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        size = ctrl & 0x0F
        if size > 8:
            self.pos -= 1
            raise self.fail(f"integer of {size} bytes")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def read_float(self) -> float:
        """A (mantissa, exponent) pair meaning ``mantissa * 2**exponent``."""
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        return float(np.ldexp(float(mantissa), exponent))

    def read_string(self, max_len: int = 1 << 16) -> str:
        n = self.read_int()
        if not 0 <= n <= max_len:
            raise self.fail(f"implausible string length {n}")
        try:
            return bytes(self._take(n)).decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.fail("non-ascii string") from exc

    def read_bool(self) -> bool:
        ch = bytes(self._take(1))
        if ch not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(f"bad bool byte {ch!r}")
        return ch == b"1"

    def read_dims(self) -> tuple[int, int, int, int]:
        dims = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor dimension {dims}")
        return dims  # type: ignore[return-value]

    def read_tensor(self) -> np.ndarray:
        """A resizable tensor (version 2): dims, then float32 LE data. Returns (n, k, nr, nc)."""
        version = self.read_int()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version}")
        dims = self.read_dims()
        count = int(np.prod(dims, dtype=np.int64))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def read_alias(self) -> tuple[int, int, int, int]:
        """An alias tensor (version 1): only its four dimensions."""
        version = self.read_int()
        if version != 1:
            raise self.fail(f"unsupported alias tensor version {version}")
        return self.read_dims()

    def at_end(self) -> bool:
        return self.pos == len(self.data)


# ----------------------------------------------------------------------------- layer specs
@dataclass(frozen=True)
class InputSpec:
    """``input_rgb_image_sized``: network input ``(pixel_0_255 - mean) / 256``, RGB order."""

    mean_rgb: tuple[float, float, float]
    size: tuple[int, int]  # (rows, cols)


@dataclass(frozen=True)
class LossMetricSpec:
    margin: float
    distance_threshold: float


@dataclass(frozen=True)
class ConvSpec:
    """``con``: cross-correlation with ``weight (F, C, kh, kw)`` and ``bias (F,)``."""

    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class AffineSpec:
    """``affine`` (inference-time batch norm): ``y = gamma * x + beta`` per channel."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class PoolSpec:
    """``max_pool`` / ``avg_pool``; ``window == (0, 0)`` means the whole feature map."""

    kind: str  # "max" | "avg"
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class FcSpec:
    """``fc``: ``y = x @ weight + bias`` with ``weight (num_inputs, num_outputs)``."""

    weight: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class ReluSpec:
    pass


@dataclass(frozen=True)
class AddPrevSpec:
    """``add_prev``: sum with a tagged earlier output, zero-padding the smaller tensor."""


@dataclass(frozen=True)
class TagSpec:
    """A ``tagN`` or ``skipN`` layer (indistinguishable in the file: no body, no id)."""


LayerSpec = ConvSpec | AffineSpec | PoolSpec | FcSpec | ReluSpec | AddPrevSpec | TagSpec


@dataclass
class DlibNetSpec:
    """A parsed network: ``layers`` in forward order (input side first)."""

    loss: LossMetricSpec
    input: InputSpec
    layers: list[LayerSpec] = field(default_factory=list)


# ----------------------------------------------------------------------------- layer parsers
def _read_multipliers(r: DlibReader, n: int) -> None:
    for _ in range(n):
        value = r.read_float()
        if not np.isfinite(value):
            raise r.fail("non-finite learning-rate multiplier")


def _read_con(r: DlibReader) -> ConvSpec:
    params = r.read_tensor().reshape(-1)
    num_filters, nr, nc = r.read_int(), r.read_int(), r.read_int()
    stride = (r.read_int(), r.read_int())
    padding = (r.read_int(), r.read_int())
    fdims = r.read_alias()
    bdims = r.read_alias()
    _read_multipliers(r, 4)
    if num_filters <= 0 or nr <= 0 or nc <= 0 or min(stride) <= 0 or min(padding) < 0:
        raise r.fail(f"bad conv geometry {num_filters}x{nr}x{nc} stride {stride} pad {padding}")
    if fdims[0] != num_filters or fdims[2:] != (nr, nc) or bdims != (1, num_filters, 1, 1):
        raise r.fail(f"conv alias shapes {fdims}/{bdims} disagree with {num_filters}x{nr}x{nc}")
    n_w = int(np.prod(fdims))
    if params.size != n_w + num_filters:
        raise r.fail(f"conv has {params.size} parameters, expected {n_w + num_filters}")
    return ConvSpec(
        weight=params[:n_w].reshape(fdims).copy(),
        bias=params[n_w:].copy(),
        stride=stride,
        padding=padding,
    )


def _read_affine(r: DlibReader) -> AffineSpec:
    params = r.read_tensor().reshape(-1)
    gdims = r.read_alias()
    bdims = r.read_alias()
    mode = r.read_int()
    if mode not in (0, 1) or gdims != bdims:
        raise r.fail(f"bad affine layer (mode {mode}, shapes {gdims}/{bdims})")
    n = int(np.prod(gdims))
    if params.size != 2 * n:
        raise r.fail(f"affine has {params.size} parameters, expected {2 * n}")
    return AffineSpec(gamma=params[:n].copy(), beta=params[n:].copy())


def _read_pool(r: DlibReader, kind: str) -> PoolSpec:
    window = (r.read_int(), r.read_int())
    stride = (r.read_int(), r.read_int())
    padding = (r.read_int(), r.read_int())
    if min(window) < 0 or min(stride) <= 0 or min(padding) < 0:
        raise r.fail(f"bad {kind} pool geometry {window} {stride} {padding}")
    return PoolSpec(kind=kind, window=window, stride=stride, padding=padding)


def _read_fc(r: DlibReader) -> FcSpec:
    num_outputs, num_inputs = r.read_int(), r.read_int()
    params = r.read_tensor().reshape(-1)
    wdims = r.read_alias()
    bdims = r.read_alias()
    bias_mode = r.read_int()
    _read_multipliers(r, 4)
    if wdims != (num_inputs, num_outputs, 1, 1) or bias_mode not in (0, 1):
        raise r.fail(f"bad fc layer ({num_inputs}->{num_outputs}, weights {wdims})")
    n_w = num_inputs * num_outputs
    has_bias = bias_mode == 0
    expected = n_w + (num_outputs if has_bias else 0)
    if params.size != expected or (has_bias and bdims != (1, num_outputs, 1, 1)):
        raise r.fail(f"fc has {params.size} parameters, expected {expected}")
    weight = params[:n_w].reshape(num_inputs, num_outputs).copy()
    return FcSpec(weight=weight, bias=params[n_w:].copy() if has_bias else None)


def _read_layer_details(r: DlibReader) -> LayerSpec:
    name = r.read_string(64)
    if name == "con_4":
        return _read_con(r)
    if name == "affine_":
        return _read_affine(r)
    if name == "relu_":
        return ReluSpec()
    if name == "add_prev_":
        return AddPrevSpec()
    if name == "max_pool_2":
        return _read_pool(r, "max")
    if name == "avg_pool_2":
        return _read_pool(r, "avg")
    if name == "fc_2":
        return _read_fc(r)
    raise r.fail(f"unsupported layer type {name!r}")


def _read_layer_trailer(r: DlibReader) -> None:
    """What ``add_layer`` writes after a layer: 3 state flags, then x_grad, output, params_grad."""
    for _ in range(3):
        r.read_bool()
    for _ in range(3):
        r.read_tensor()


def _read_input(r: DlibReader) -> InputSpec:
    name = r.read_string(64)
    if name != "input_rgb_image_sized":
        raise r.fail(f"unsupported input layer {name!r}")
    mean = (r.read_float(), r.read_float(), r.read_float())
    size = (r.read_int(), r.read_int())
    if not all(0.0 <= m <= 255.0 for m in mean) or min(size) <= 0:
        raise r.fail(f"bad input layer (mean {mean}, size {size})")
    return InputSpec(mean_rgb=mean, size=size)


def parse_dlib_net(data: bytes, name: str = "dlib file") -> DlibNetSpec:
    """Parse a serialized ``loss_metric`` network from bytes. See :func:`read_dlib_net`."""
    r = DlibReader(data, name)
    if r.read_int() != 1:
        raise r.fail("not a dlib loss_metric network (bad loss-layer version)")
    loss_name = r.read_string(64)
    if loss_name != "loss_metric_2":
        raise r.fail(f"unsupported loss layer {loss_name!r}")
    loss = LossMetricSpec(margin=r.read_float(), distance_threshold=r.read_float())

    # Versions of the wrapped layers, outermost first: 2 = add_layer, 1 = tag/skip,
    # 3 = innermost add_layer (the one holding the input layer).
    versions: list[int] = []
    while True:
        v = r.read_int()
        if v not in (1, 2, 3):
            raise r.fail(f"unexpected layer version {v}")
        versions.append(v)
        if v == 3:
            break
        if len(versions) > 10_000:
            raise r.fail("no input layer found")

    input_spec = _read_input(r)
    layers: list[LayerSpec] = []
    for v in reversed(versions):
        if v == 1:
            layers.append(TagSpec())
            continue
        layers.append(_read_layer_details(r))
        _read_layer_trailer(r)
        if v == 3 and r.read_int() != 1:  # innermost layer also stores its sample expansion
            raise r.fail("bad sample expansion factor")
    if not r.at_end():
        raise r.fail(f"{len(r.data) - r.pos} unexpected trailing bytes")
    return DlibNetSpec(loss=loss, input=input_spec, layers=layers)


def read_dlib_net(path: str | os.PathLike[str]) -> DlibNetSpec:
    """Read a dlib ``loss_metric`` DNN file (e.g. ``dlib_face_recognition_resnet_model_v1.dat``).

    Returns the loss settings, the input layer and the layers in forward order. Raises
    :class:`~facerecon.errors.ModelFileError` if the file is missing, truncated or not such a net.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read dlib model file {p}: {exc.strerror}") from exc
    return parse_dlib_net(data, name=p.name)
